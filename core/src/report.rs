//! The drain report: everything that happened between `terminate` and exit,
//! counted from the close reasons core emitted, so the report and the events
//! can never disagree.

use std::fmt;
use std::time::Duration;

use crate::close::CloseReason;
use crate::finished::Outcome;
use crate::time::Time;

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
    /// The listener was handed to a successor (a hot upgrade): its backlog
    /// was left to the successor, not drained.
    pub handed_off: bool,
    /// Connections accepted from the backlog once the drain began.
    pub backlog_accepted: u64,
    /// Connections accepted during the drain that sent nothing within
    /// `first_byte_grace` ([`CloseReason::FirstByteGrace`]).
    pub silent_closed: u64,
    /// Idle keep-alive connections closed by the drain
    /// ([`CloseReason::IdleInDrain`]).
    pub idle_closed: u64,
    /// Responses from the application completely written after `terminate`.
    pub requests_completed: u64,
    /// Error responses core wrote on its own after `terminate` (400, 408,
    /// 413, …): requests refused, not completed.
    pub requests_rejected: u64,
    /// Requests begun but not completely answered when exit was forced,
    /// as the cores counted them: those held by a stuck worker (below) are
    /// not among them.
    pub requests_cut: u64,
    /// Upgraded connections (which left HTTP) open during the drain, or
    /// when a second terminate ended PreStop (a drain that never began).
    pub upgraded_open: u64,
    /// Upgraded connections the deadline (or a forced exit) closed.
    pub upgraded_cut: u64,
    /// Connections closed while their client might still have been sending,
    /// so the close could have reset unread data (linger gave up, a write
    /// stalled, or exit was forced).
    pub reset_risk_closes: u64,
    /// Cores whose thread was still inside the application's handler when
    /// the exit could wait no longer (the drain deadline, or a second
    /// terminate, had passed): the driver gave up on them, so what they held
    /// — at least the request in that handler — is cut and counted nowhere
    /// else. Core never sets this; a driver running cores on threads does.
    pub stuck_workers: u64,
}

impl DrainReport {
    /// A report of a stop that began at `terminated_at`, with nothing
    /// counted yet. Core fills its own in; this is for tools and tests that
    /// need one to hand.
    pub fn new(terminated_at: Time) -> DrainReport {
        DrainReport {
            terminated_at,
            draining_at: None,
            listener_closed_at: None,
            exited_at: terminated_at,
            forced: None,
            handed_off: false,
            backlog_accepted: 0,
            silent_closed: 0,
            idle_closed: 0,
            requests_completed: 0,
            requests_rejected: 0,
            requests_cut: 0,
            upgraded_open: 0,
            upgraded_cut: 0,
            reset_risk_closes: 0,
            stuck_workers: 0,
        }
    }

    /// From `terminate` to exit.
    pub fn total(&self) -> Duration {
        self.exited_at - self.terminated_at
    }

    /// Whether the drain ended with work undone: exit was forced, requests
    /// were cut, or a stuck worker was given up on. A supervisor may want to
    /// treat such a stop as a failure.
    pub fn lost_work(&self) -> bool {
        self.forced.is_some() || self.requests_cut > 0 || self.stuck_workers > 0
    }

    /// Folds in the report of another worker that shared this one's clock
    /// epoch: counts are summed, each phase runs from its earliest start to
    /// its latest end, and a forced exit anywhere makes the whole forced.
    pub fn merge(&mut self, other: &DrainReport) {
        fn earliest(a: Option<Time>, b: Option<Time>) -> Option<Time> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        self.terminated_at = self.terminated_at.min(other.terminated_at);
        self.draining_at = earliest(self.draining_at, other.draining_at);
        self.listener_closed_at = self.listener_closed_at.max(other.listener_closed_at);
        self.exited_at = self.exited_at.max(other.exited_at);
        self.forced = self.forced.or(other.forced);
        self.handed_off |= other.handed_off;
        self.backlog_accepted += other.backlog_accepted;
        self.silent_closed += other.silent_closed;
        self.idle_closed += other.idle_closed;
        self.requests_completed += other.requests_completed;
        self.requests_rejected += other.requests_rejected;
        self.requests_cut += other.requests_cut;
        self.upgraded_open += other.upgraded_open;
        self.upgraded_cut += other.upgraded_cut;
        self.reset_risk_closes += other.reset_risk_closes;
        self.stuck_workers += other.stuck_workers;
    }

    /// Counts the decision to end a connection (its half-close, or its close
    /// when no linger precedes it).
    pub(crate) fn record_decision(&mut self, reason: CloseReason) {
        match reason {
            CloseReason::IdleInDrain => self.idle_closed += 1,
            CloseReason::FirstByteGrace => self.silent_closed += 1,
            _ => {}
        }
    }

    /// Counts a connection's final close: how many requests it cut, and
    /// whether it risked resetting data the client was still sending.
    pub(crate) fn record_close(&mut self, cut: u64, reset_risk: bool) {
        self.requests_cut += cut;
        self.reset_risk_closes += u64::from(reset_risk);
    }

    /// Counts a response completely handed to the driver, by how its
    /// request ended: one core wrote itself is a rejection, one whose
    /// stream broke its declared length counts as neither.
    pub(crate) fn record_written(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Rejected(_) => self.requests_rejected += 1,
            Outcome::Unfinished(_) => {}
            _ => self.requests_completed += 1,
        }
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
            "drain {}{} in {}ms: draining at {}, listener closed at {}, backlog accepted {}, \
             silent closed {}, idle closed {}, completed {}, rejected {}, cut {}, \
             upgraded {} (cut {}), reset-risk closes {}",
            match self.forced {
                None => "complete",
                Some(Forced::Deadline) => "forced by deadline",
                Some(Forced::SecondTerminate) => "forced by second terminate",
            },
            if self.handed_off {
                " after hand-off"
            } else {
                ""
            },
            self.total().as_millis(),
            ms(self.draining_at),
            ms(self.listener_closed_at),
            self.backlog_accepted,
            self.silent_closed,
            self.idle_closed,
            self.requests_completed,
            self.requests_rejected,
            self.requests_cut,
            self.upgraded_open,
            self.upgraded_cut,
            self.reset_risk_closes,
        )?;
        // Only when there are any: a driver with one core per process never
        // has any, and the line stays as it was.
        if self.stuck_workers > 0 {
            write!(f, ", stuck workers given up on {}", self.stuck_workers)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_sums_counts_and_spans_phases() {
        let mut a = DrainReport::new(Time::from_millis(10));
        a.draining_at = Some(Time::from_millis(20));
        a.exited_at = Time::from_millis(100);
        a.requests_completed = 3;
        let mut b = DrainReport::new(Time::from_millis(5));
        b.listener_closed_at = Some(Time::from_millis(30));
        b.exited_at = Time::from_millis(200);
        b.forced = Some(Forced::Deadline);
        b.requests_completed = 4;
        b.requests_cut = 1;
        a.merge(&b);
        assert_eq!(a.terminated_at, Time::from_millis(5));
        assert_eq!(a.draining_at, Some(Time::from_millis(20)));
        assert_eq!(a.listener_closed_at, Some(Time::from_millis(30)));
        assert_eq!(a.exited_at, Time::from_millis(200));
        assert_eq!(a.forced, Some(Forced::Deadline));
        assert_eq!((a.requests_completed, a.requests_cut), (7, 1));
        assert!(a.lost_work());
    }

    /// Every count is summed, and each of the three signs of lost work
    /// is one alone; a clean drain lost none.
    #[test]
    fn merging_sums_every_count_and_each_sign_of_lost_work_counts_alone() {
        let counts = |r: &DrainReport| {
            [
                r.backlog_accepted,
                r.silent_closed,
                r.idle_closed,
                r.requests_completed,
                r.requests_rejected,
                r.requests_cut,
                r.upgraded_open,
                r.upgraded_cut,
                r.reset_risk_closes,
                r.stuck_workers,
            ]
        };
        let mut b = DrainReport::new(Time::ZERO);
        b.handed_off = true;
        [
            b.backlog_accepted,
            b.silent_closed,
            b.idle_closed,
            b.requests_completed,
            b.requests_rejected,
            b.requests_cut,
            b.upgraded_open,
            b.upgraded_cut,
            b.reset_risk_closes,
            b.stuck_workers,
        ] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        let mut a = DrainReport::new(Time::ZERO);
        a.merge(&b);
        a.merge(&b);
        assert_eq!(counts(&a), [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]);
        assert!(a.handed_off);
        let mut clean = DrainReport::new(Time::ZERO);
        clean.merge(&DrainReport::new(Time::ZERO));
        assert!(!clean.handed_off);
        assert!(!clean.lost_work());
        for sign in 0..3 {
            let mut r = DrainReport::new(Time::ZERO);
            match sign {
                0 => r.forced = Some(Forced::SecondTerminate),
                1 => r.requests_cut = 1,
                _ => r.stuck_workers = 1,
            }
            assert!(r.lost_work(), "sign {sign}");
        }
    }

    /// A response written whole counts by its outcome; one whose request
    /// was left unfinished (a stream that broke its length) counts as
    /// neither completed nor rejected.
    #[test]
    fn a_written_response_counts_by_its_outcome() {
        let mut r = DrainReport::new(Time::ZERO);
        r.record_written(Outcome::Unfinished(CloseReason::StreamMismatch));
        assert_eq!((r.requests_completed, r.requests_rejected), (0, 0));
        r.record_written(Outcome::Rejected(crate::reject::Reject::HeadTimeout));
        r.record_written(Outcome::Complete);
        assert_eq!((r.requests_completed, r.requests_rejected), (1, 1));
    }

    #[test]
    fn stuck_workers_are_summed_shown_and_lost_work() {
        let mut a = DrainReport::new(Time::ZERO);
        assert!(!a.to_string().contains("stuck"), "{a}");
        let mut b = DrainReport::new(Time::ZERO);
        b.stuck_workers = 1;
        a.merge(&b);
        a.merge(&b);
        assert_eq!(a.stuck_workers, 2);
        assert!(a.lost_work());
        assert!(
            a.to_string().ends_with(", stuck workers given up on 2"),
            "{a}"
        );
    }
}
