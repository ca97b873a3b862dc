//! Core's self-check: [`Server::check_invariants`], which the simulator and
//! the fuzzers call after every step. It reads the connection table, the
//! timer lists and the transition table's implied timers, so it lives apart
//! from both `server` and `transitions` (neither imports the other).

use crate::conn::{Conn, State};
use crate::lifecycle::Lifecycle;
use crate::server::Server;
use crate::transitions::{implied_timer, DrainTimes};

impl Server {
    /// Checks core's internal invariants: the active count against a recount,
    /// the timer lists, each connection on the timer its state implies, and
    /// no buffers held by idle connections. The simulator and the fuzzers call
    /// it after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        // One pass over the table recounts the active requests and the
        // connections that claim a timer, and keeps the first connection's
        // fault; the errors come out in the order of the checks, so a state
        // with several faults reports the same one as checks made one by one.
        let drain = self.drain_times();
        let mut recount = 0;
        let mut claimed = 0;
        let mut fault = None;
        for (key, conn) in self.conns.iter() {
            let active = conn.is_active();
            recount += usize::from(active);
            claimed += usize::from(conn.link.kind().is_some());
            if fault.is_none() {
                fault = self.connection_fault(key, conn, active, drain);
            }
        }
        if recount != self.active {
            return Err(format!(
                "active count {} but recount {}",
                self.active, recount
            ));
        }
        self.timers.check(&self.conns, claimed)?;
        if let Some(fault) = fault {
            return Err(fault);
        }
        if matches!(self.lifecycle, Lifecycle::Exited(_)) && !self.conns.is_empty() {
            return Err("exited with connections open".to_owned());
        }
        Ok(())
    }

    /// What is wrong with connection `key` on its own, if anything: its
    /// timer, its place in the count, its buffers.
    fn connection_fault(
        &self,
        key: usize,
        conn: &Conn,
        active: bool,
        drain: Option<DrainTimes>,
    ) -> Option<String> {
        let timer = conn.link.kind().map(|kind| (kind, conn.link.deadline()));
        let implied = implied_timer(conn, drain, &self.config, &self.timeouts);
        if timer != implied {
            return Some(format!(
                "connection {key} in {:?} has timer {timer:?}, not {implied:?}",
                conn.state
            ));
        }
        if conn.counted != active {
            return Some(format!("connection {key} is miscounted"));
        }
        let idle = match conn.state {
            State::Idle => conn.pending_out() == 0,
            State::Lingering { .. } => true,
            _ => false,
        };
        if idle && conn.bufs.is_some() {
            return Some(format!(
                "connection {key} holds buffers while {:?}",
                conn.state
            ));
        }
        None
    }
}
