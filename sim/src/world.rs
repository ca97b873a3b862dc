//! The world: a virtual clock that jumps to the next timed event, the event
//! queue, and the run loop that interleaves world events with core's own
//! deadline.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use ebb_core::{ConnId, DrainReport, Event, Phase, RequestId, Server, Time};

use crate::check::Ledger;
use crate::client::{Client, Kind, Wake};
use crate::kernel::{Dir, KConn};
use crate::knobs::Knobs;
use crate::rng::Rng;
use crate::trace;
use crate::trace::Trace;

/// Something that happens at a point in virtual time.
#[derive(Clone, Copy, Debug)]
pub enum Ev {
    /// A client (re)connects.
    ClientStart(usize),
    /// A client's own timer, for its connection `k`.
    ClientWake(usize, usize, Wake),
    /// A slow client reads connection `k`.
    ClientRead(usize, usize),
    /// The next segment of a direction of connection `k` arrives.
    Arrive(usize, Dir),
    /// The listener is readable: the driver accepts what is queued.
    AcceptReady,
    /// The application answers.
    AppAnswer(RequestId),
    /// SIGTERM.
    Terminate,
}

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
    BacklogEmpty,
    Timeout,
}

/// Counters reported at the end of a run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Requests whose client read a complete application response.
    pub answered: u64,
    /// Of `answered`: requests the application failed, answered by core's 500.
    pub faulted: u64,
    /// Requests rejected by core with a 4xx/5xx.
    pub rejected: u64,
    /// Requests handed to the application.
    pub handed: u64,
    /// Connections made (accepted into the backlog).
    pub connections: u64,
    /// Connections refused (backlog full, or listener closed).
    pub refused: u64,
    /// Connections reset in the backlog when the listener closed.
    pub backlog_reset: u64,
    /// Responses lost for reasons the properties allow (deadline, timeouts).
    pub allowed_losses: u64,
    /// World steps taken.
    pub steps: u64,
}

/// How one seed ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub knobs: Knobs,
    /// The first property violated, if any.
    pub failure: Option<String>,
    pub stats: Stats,
    /// The drain report core emitted.
    pub report: Option<DrainReport>,
    /// Virtual time simulated.
    pub virtual_time: Duration,
    /// FNV-1a of the trace, when hashing was asked for.
    pub trace_hash: Option<u64>,
}

/// State captured before a top-level step, for the checks after it.
#[derive(Clone, Copy, Debug)]
pub struct StepStart {
    pub phase: Phase,
    pub active: usize,
    pub top: Option<Cause>,
    pub exited: bool,
}

pub struct World {
    pub now: Time,
    pub rng: Rng,
    pub knobs: Knobs,
    pub server: Server,
    queue: BTreeMap<(Time, u64), Ev>,
    seq: u64,
    pub conns: Vec<KConn>,
    pub by_id: BTreeMap<ConnId, usize>,
    pub backlog: VecDeque<usize>,
    pub listener_open: bool,
    pub accept_scheduled: bool,
    pub clients: Vec<Client>,
    /// Core events drained after each input, carried out in order.
    pub pending: VecDeque<(Event, Cause)>,
    /// The input whose event is being carried out.
    pub cause: Cause,
    pub exited: Option<DrainReport>,
    pub terminates: u32,
    pub ledger: Ledger,
    pub trace: Trace,
    pub failure: Option<String>,
    pub stats: Stats,
    pub step: u64,
    pub step_start: StepStart,
    /// Core inputs made so far.
    pub inputs: u64,
}

/// Runs one seed. `print` prints the trace; `hash` hashes it.
pub fn run(seed: u64, print: bool, hash: bool) -> Outcome {
    let knobs = Knobs::from_seed(seed);
    let mut w = World::new(knobs, Trace::new(print, hash));
    w.run();
    Outcome {
        knobs: w.knobs.clone(),
        failure: w.failure.clone(),
        stats: w.stats.clone(),
        report: w.exited.clone(),
        virtual_time: w.now.since_epoch(),
        trace_hash: w.trace.hash(),
    }
}

impl World {
    fn new(knobs: Knobs, trace: Trace) -> World {
        let mut rng = Rng::new(knobs.seed);
        let server = Server::new(knobs.config.clone());
        let clients = (0..knobs.clients)
            .map(|_| {
                let kind = Kind::ALL[rng.weighted(&knobs.weights).unwrap_or(0)];
                Client::new(kind, &mut rng, &knobs)
            })
            .collect();
        World {
            now: Time::ZERO,
            rng,
            knobs,
            server,
            queue: BTreeMap::new(),
            seq: 0,
            conns: Vec::new(),
            by_id: BTreeMap::new(),
            backlog: VecDeque::new(),
            listener_open: true,
            accept_scheduled: false,
            clients,
            pending: VecDeque::new(),
            cause: Cause::Timeout,
            exited: None,
            terminates: 0,
            ledger: Ledger::default(),
            trace,
            failure: None,
            stats: Stats::default(),
            step: 0,
            step_start: StepStart {
                phase: Phase::Serving,
                active: 0,
                top: None,
                exited: false,
            },
            inputs: 0,
        }
    }

    /// Schedules `ev` at `at` (never before now).
    pub fn at(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), ev);
    }

    /// Schedules `ev` after `d`.
    pub fn after(&mut self, d: Duration, ev: Ev) {
        self.at(self.now + d, ev);
    }

    /// Records the first property violation; the run stops after this step.
    pub fn fail(&mut self, what: String) {
        trace!(self, "FAIL {what}");
        if self.failure.is_none() {
            self.failure = Some(format!("at {:?} (step {}): {what}", self.now, self.step));
        }
    }

    fn run(&mut self) {
        if self.trace.on() {
            for line in self.knobs.to_string().lines() {
                trace!(self, "knob {}", line.trim_start());
            }
        }
        let rush_from = self
            .knobs
            .terminate_at
            .saturating_sub(Duration::from_millis(20));
        let rush_span = Duration::from_millis(25) + self.knobs.config.pre_stop;
        for c in 0..self.clients.len() {
            let at = if self.rng.percent(self.knobs.rush_percent) {
                rush_from + self.rng.upto(rush_span)
            } else {
                self.rng.upto(self.knobs.arrival_span)
            };
            self.at(Time::from_duration(at), Ev::ClientStart(c));
        }
        self.at(Time::from_duration(self.knobs.terminate_at), Ev::Terminate);
        if let Some(t) = self.knobs.second_terminate_at {
            self.at(Time::from_duration(t), Ev::Terminate);
        }
        let c = &self.knobs.config;
        // Liveness bound: the server must have exited, and the world gone
        // quiet, well within this.
        let bound = Time::from_duration(
            self.knobs.terminate_at + c.pre_stop + c.drain_timeout + Duration::from_secs(60),
        );
        let mut same_time_steps = 0u32;
        while self.failure.is_none() {
            let ev_at = self.queue.first_key_value().map(|(k, _)| k.0);
            let core_at = if self.exited.is_none() {
                self.server.poll_timeout()
            } else {
                None
            };
            let (t, core_first) = match (ev_at, core_at) {
                (None, None) => break,
                (Some(e), Some(c)) if c <= e => (c, true),
                (None, Some(c)) => (c, true),
                (Some(e), _) => (e, false),
            };
            if t > bound {
                break;
            }
            if t <= self.now {
                same_time_steps += 1;
                if same_time_steps > 100_000 {
                    self.fail(format!(
                        "no progress: 100000 steps at one instant (core deadline {core_at:?})"
                    ));
                    break;
                }
            } else {
                same_time_steps = 0;
            }
            self.now = self.now.max(t);
            self.step += 1;
            self.step_start = StepStart {
                phase: self.server.phase(),
                active: self.server.active_requests(),
                top: None,
                exited: self.exited.is_some(),
            };
            let inputs = self.inputs;
            if core_first {
                self.step_start.top = Some(Cause::Timeout);
                trace!(self, "core timeout");
                self.input(Cause::Timeout, |s, now| s.handle_timeout(now));
            } else {
                let (_, ev) = self.queue.pop_first().expect("peeked above");
                self.world_event(ev);
            }
            // Only the step's own input (terminate, or the end of PreStop)
            // can begin the drain; no recv has happened since.
            self.note_drain_start(self.step_start.phase);
            self.run_pending();
            // A step that made no core input (a refused connect, a client's
            // timer) cannot change what the checks look at.
            if self.inputs != inputs {
                self.check_step();
            }
        }
        self.stats.steps = self.step;
        self.check_end();
    }

    fn world_event(&mut self, ev: Ev) {
        match ev {
            Ev::ClientStart(c) => self.client_start(c),
            Ev::ClientWake(c, k, wake) => self.client_wake(c, k, wake),
            Ev::ClientRead(c, k) => self.client_read(c, k),
            Ev::Arrive(k, dir) => self.on_arrive(k, dir),
            Ev::AcceptReady => self.accept_ready(),
            Ev::AppAnswer(id) => self.app_answer(id),
            Ev::Terminate => {
                self.terminates += 1;
                self.step_start.top = Some(Cause::Terminate);
                trace!(self, "signal terminate #{}", self.terminates);
                self.input(Cause::Terminate, |s, now| s.handle_terminate(now));
            }
        }
    }
}
