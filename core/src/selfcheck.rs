//! Core's self-check: [`Server::check_invariants`], which the simulator and
//! the fuzzers call after every step. It reads the connection table, the
//! timer lists and the transition table's implied timers, so it lives apart
//! from both `server` and `transitions` (neither imports the other).

use crate::conn::{Conn, State};
use crate::lifecycle::Lifecycle;
use crate::server::Server;
use crate::time::Time;
use crate::timers::TimerKind;
use crate::transitions::{implied_timer, DrainTimes};

/// What is wrong with one connection on its own. Found in the pass over the
/// table and put into words only once found, so that the pass carries no
/// message (nor the values one would be made of) from connection to
/// connection.
#[derive(Copy, Clone)]
enum Fault {
    Timer {
        timer: Option<(TimerKind, Time)>,
        implied: Option<(TimerKind, Time)>,
    },
    Miscounted,
    Buffers,
    /// A timer that waits on the client runs while core keeps the driver
    /// from reading what the client sends.
    ReadHeld(TimerKind),
}

/// The two counts the pass over the table takes of every connection.
#[derive(Default)]
struct Tally {
    /// Connections with an active request.
    active: usize,
    /// Connections that say they are on a timer list.
    claimed: usize,
}

impl Tally {
    /// Counts `conn`, and returns whether it is active.
    fn count(&mut self, conn: &Conn) -> bool {
        let active = conn.is_active();
        self.active += usize::from(active);
        self.claimed += usize::from(conn.link.kind().is_some());
        active
    }
}

impl Server {
    /// Checks core's internal invariants: the active count against a recount,
    /// the timer lists, each connection on the timer its state implies, and
    /// no buffers held by idle connections. The simulator and the fuzzers call
    /// it after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        // One pass over the table recounts the active requests and the
        // connections that claim a timer, and finds the first connection's
        // fault (after which it only counts); the errors come out in the
        // order of the checks, so a state with several faults reports the
        // same one as checks made one by one.
        let drain = self.drain_times();
        let mut tally = Tally::default();
        let mut fault = None;
        let mut conns = self.conns.iter();
        for (key, conn) in conns.by_ref() {
            let active = tally.count(conn);
            if let Some(found) = self.connection_fault(key, conn, active, drain) {
                fault = Some((key, found));
                break;
            }
        }
        for (_, conn) in conns {
            tally.count(conn);
        }
        // Taken apart, so that the counts stay in registers: the message
        // that borrows the recount would otherwise keep the tally in memory.
        let Tally {
            active: recount,
            claimed,
        } = tally;
        if recount != self.active {
            return Err(format!(
                "active count {} but recount {}",
                self.active, recount
            ));
        }
        self.timers.check(&self.conns, claimed)?;
        if let Some((key, fault)) = fault {
            return Err(self.describe(key, fault));
        }
        if matches!(self.lifecycle, Lifecycle::Exited(_)) && !self.conns.is_empty() {
            return Err("exited with connections open".to_owned());
        }
        Ok(())
    }

    /// What is wrong with connection `key` on its own, if anything: its
    /// timer, its place in the count, its buffers, its reading.
    fn connection_fault(
        &self,
        key: usize,
        conn: &Conn,
        active: bool,
        drain: Option<DrainTimes>,
    ) -> Option<Fault> {
        let timer = conn.link.kind().map(|kind| (kind, conn.link.deadline()));
        let implied = implied_timer(conn, drain, &self.config, &self.timeouts);
        if timer != implied {
            return Some(Fault::Timer { timer, implied });
        }
        if conn.counted != active {
            return Some(Fault::Miscounted);
        }
        let idle = match conn.state {
            State::Idle => conn.pending_out() == 0,
            State::Lingering { .. } => true,
            _ => false,
        };
        if idle && conn.bufs.is_some() {
            return Some(Fault::Buffers);
        }
        // A head, a body or a linger's FIN timed while unread bytes may
        // wait in the kernel: the deadline would cut a client that sent in
        // time (or reset one that closed).
        if let Some((kind @ (TimerKind::Header | TimerKind::Body | TimerKind::Linger), _)) = timer {
            if conn.read_paused.get() && self.wants_read_key(key) {
                return Some(Fault::ReadHeld(kind));
            }
        }
        None
    }

    /// `fault` of connection `key`, in words.
    #[cold]
    fn describe(&self, key: usize, fault: Fault) -> String {
        let state = &self.conns[key].state;
        match fault {
            Fault::Timer { timer, implied } => {
                format!("connection {key} in {state:?} has timer {timer:?}, not {implied:?}")
            }
            Fault::Miscounted => format!("connection {key} is miscounted"),
            Fault::Buffers => format!("connection {key} holds buffers while {state:?}"),
            Fault::ReadHeld(kind) => format!(
                "connection {key} in {state:?} is on the {kind:?} timer, but core keeps its reading paused"
            ),
        }
    }
}
