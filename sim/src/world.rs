//! The world: core and the parts around it — kernel, driver, clients,
//! application, checker — and the run loop that moves the virtual clock to
//! the next timed event or core deadline, whichever is first.
//!
//! The parts do not call each other. The kernel queues [`Notice`]s, the
//! driver queues core's events; after each step's own event the world hands
//! both out until neither has anything left, then the checker judges the
//! step.
//!
//! In seeds whose knobs say so, the world hands the listener to a
//! successor (`handle_handoff`) instead of, or after, the terminate: the
//! successor is another core with its own driver and application, which
//! accepts from the same listening socket — the same backlog — from then
//! on, and serves what it accepts (checked like the server under test,
//! except for the drain rules: it never stops).

use std::time::Duration;

use ebb_core::{DrainReport, Event, RequestId, Server, StreamError, Time};

use crate::app::{AnswerKind, App, AppCover, Got, Next, Piece};
use crate::check::Checker;
use crate::check::Cover;
use crate::client::ClientCover;
use crate::client::Clients;
use crate::driver::{Cause, DriverModel};
use crate::env::{Env, Ev};
use crate::failure::Failure;
use crate::kernel::{Dir, Kernel, NetStats, Notice, Owner, Recv, ServerEnd};
use crate::knobs::{Handoff, Knobs};
use crate::request;
use crate::trace;
use crate::trace::{Trace, TraceMode};

/// How long past the drain a world may take to go quiet, and how long after
/// a client's last complete response (see `World::run`).
const LIVENESS_SLACK: Duration = Duration::from_secs(60);

/// Counters reported at the end of a run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Requests whose client read a complete answer.
    pub answered: u64,
    /// Of `answered`: requests the application failed, answered by core's 500.
    pub faulted: u64,
    /// Requests rejected by core with a 4xx/5xx.
    pub rejected: u64,
    /// Requests handed to the application.
    pub handed: u64,
    /// What the kernel counted: connections, refusals, backlog resets.
    pub net: NetStats,
    /// Responses lost for reasons the properties allow (deadline, timeouts).
    pub allowed_losses: u64,
    /// World steps taken.
    pub steps: u64,
    /// What the checker saw happen (coverage).
    pub cover: Cover,
    /// What the clients saw happen (coverage).
    pub clients: ClientCover,
    /// What the application (of the server under test) met (coverage).
    pub app: AppCover,
}

/// How one seed ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub knobs: Knobs,
    /// The first property violated, if any.
    pub failure: Option<Failure>,
    pub stats: Stats,
    /// The drain report core emitted.
    pub report: Option<DrainReport>,
    /// Virtual time simulated.
    pub virtual_time: Duration,
    /// FNV-1a of the trace, unless tracing was off.
    pub trace_hash: Option<u64>,
}

/// Runs one seed: derives its knobs, builds its world, runs it to the end
/// and judges it. A panic (in core, or in the world) is a safety failure of
/// the seed, not of the whole run.
pub fn run_seed(seed: u64, mode: TraceMode) -> Outcome {
    let knobs = Knobs::from_seed(seed);
    let world = World::new(knobs.clone(), Trace::new(mode));
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.run())).unwrap_or_else(
        |payload| {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Outcome {
                knobs,
                failure: Some(Failure::Safety(format!("panicked: {what}"))),
                stats: Stats::default(),
                report: None,
                virtual_time: Duration::ZERO,
                trace_hash: None,
            }
        },
    )
}

struct World {
    env: Env,
    knobs: Knobs,
    core: Server,
    kernel: Kernel,
    driver: DriverModel,
    clients: Clients,
    app: App,
    checker: Checker,
    /// The server the listener was handed to, once it was.
    successor: Option<Successor>,
}

/// The successor: another core, driven and answered like the first.
struct Successor {
    core: Server,
    driver: DriverModel,
    app: App,
}

/// How many times in a row a core may be handed the same deadline before
/// the run fails as a spin. Core moves every deadline it handles (its
/// tests assert it after each `handle_timeout`), so once is already wrong;
/// the margin keeps a failure's message about the spin, not its first step.
const SPIN_REPEATS: u32 = 100;

/// Which server a step or an event is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Srv {
    /// The server under test.
    Main,
    /// The successor it handed its listener to.
    Successor,
}

impl World {
    fn new(knobs: Knobs, trace: Trace) -> World {
        let mut env = Env::new(knobs.seed, trace);
        let clients = Clients::new(&knobs, &mut env.rng);
        World {
            core: Server::new(knobs.config.clone()),
            kernel: Kernel::new(&knobs),
            driver: DriverModel::new(knobs.read_buf, false),
            app: App::new(&knobs, false),
            checker: Checker::new(knobs.config.clone(), knobs.read_lag),
            successor: None,
            clients,
            knobs,
            env,
        }
    }

    fn run(mut self) -> Outcome {
        if self.env.trace.on() {
            for line in self.knobs.to_string().lines() {
                trace!(self.env, "knob {}", line.trim_start());
            }
        }
        self.schedule_arrivals_and_signals();
        let c = &self.knobs.config;
        // Liveness bound: the server must have exited, and the world gone
        // quiet, well within this — or within a minute of a client's last
        // complete response, while they keep coming (a slow reader of large
        // responses served by the successor can need minutes), up to ten
        // minutes more. A healthy world goes quiet and ends sooner.
        let bound = Time::from_duration(
            self.knobs.terminate_at + c.pre_stop + c.drain_timeout + LIVENESS_SLACK,
        );
        let cap = bound + 10 * LIVENESS_SLACK;
        let mut same_time_steps = 0u32;
        // The deadline the last step handled, and how many steps in a row
        // handled it: a deadline still due after `handle_timeout` would
        // spin a driver. Said so after a hundred, rather than as no
        // progress after the hundred thousand steps at one instant below.
        let mut last_deadline = None;
        let mut deadline_repeats = 0u32;
        while !self.env.failed() {
            let Some((t, core_first)) = self.next_step() else {
                break;
            };
            if t > bound.max(self.env.answered_at + LIVENESS_SLACK).min(cap) {
                break;
            }
            if let Some(srv) = core_first {
                if last_deadline == Some((srv, t)) {
                    deadline_repeats += 1;
                    if deadline_repeats >= SPIN_REPEATS {
                        self.env.fail(Failure::Liveness(format!(
                            "core spins: its deadline at {t:?} ({srv:?}) was still due after {SPIN_REPEATS} handle_timeout calls"
                        )));
                        break;
                    }
                } else {
                    deadline_repeats = 0;
                }
                last_deadline = Some((srv, t));
            }
            if t > self.env.now {
                same_time_steps = 0;
            } else {
                same_time_steps += 1;
                if same_time_steps > 100_000 {
                    self.env.fail(Failure::Liveness(
                        "no progress: 100000 steps at one instant".into(),
                    ));
                    break;
                }
            }
            self.step(t, core_first);
        }
        let World {
            env,
            core,
            kernel,
            driver,
            clients,
            checker,
            ..
        } = &mut self;
        checker.check_end(core, driver, clients, kernel, env);
        self.outcome()
    }

    /// When the next step happens, and whether it is a core's deadline
    /// (which goes first at a tie) rather than a world event.
    fn next_step(&mut self) -> Option<(Time, Option<Srv>)> {
        let ev_at = self.env.next_at();
        let main_at = match self.driver.exit() {
            None => self.driver.next_timeout(&self.core),
            Some(_) => None,
        };
        let succ_at = self
            .successor
            .as_mut()
            .and_then(|s| s.driver.next_timeout(&s.core));
        let core_at = match (main_at, succ_at) {
            (Some(m), Some(s)) if s < m => Some((s, Srv::Successor)),
            (Some(m), _) => Some((m, Srv::Main)),
            (None, Some(s)) => Some((s, Srv::Successor)),
            (None, None) => None,
        };
        match (ev_at, core_at) {
            (None, None) => None,
            (Some(e), Some((c, srv))) if c <= e => Some((c, Some(srv))),
            (None, Some((c, srv))) => Some((c, Some(srv))),
            (Some(e), _) => Some((e, None)),
        }
    }

    /// One step at `t`: a core's deadline or the next world event, then
    /// everything it sets off, then the checks.
    fn step(&mut self, t: Time, core_first: Option<Srv>) {
        self.env.now = self.env.now.max(t);
        self.env.step += 1;
        self.checker.begin_step(&self.core);
        let inputs = self.driver.inputs();
        let succ_inputs = self.successor.as_ref().map(|s| s.driver.inputs());
        match core_first {
            Some(Srv::Main) => {
                trace!(self.env, "core timeout");
                self.input(Cause::Timeout, |s, now| s.handle_timeout(now));
            }
            Some(Srv::Successor) => {
                trace!(self.env, "successor timeout");
                if let Some(succ) = &mut self.successor {
                    succ.driver.input(
                        &mut succ.core,
                        &mut self.checker,
                        &mut self.env,
                        Cause::Timeout,
                        |s, now| s.handle_timeout(now),
                    );
                }
            }
            None => {
                if let Some(ev) = self.env.pop() {
                    self.world_event(ev);
                }
            }
        }
        self.settle();
        // A step that made no core input (a refused connect, a client's
        // timer) cannot change what the step checks look at.
        let World {
            env,
            core,
            kernel,
            driver,
            checker,
            successor,
            ..
        } = self;
        if driver.inputs() != inputs {
            checker.check_step(core, driver, kernel, env);
        }
        if let Some(succ) = successor {
            if Some(succ.driver.inputs()) != succ_inputs {
                checker.check_step(&succ.core, &succ.driver, kernel, env);
            }
        }
    }

    /// What the run came to.
    fn outcome(self) -> Outcome {
        let (answered, faulted) = self.clients.answered();
        Outcome {
            failure: self.env.failure().cloned(),
            stats: Stats {
                answered,
                faulted,
                rejected: self.clients.rejected(),
                handed: self.app.handed(),
                net: self.kernel.stats(),
                allowed_losses: self.checker.allowed_losses(),
                steps: self.env.step,
                cover: self.checker.cover(),
                clients: self.clients.cover(),
                app: self.app.cover(),
            },
            report: self.driver.exit().cloned(),
            virtual_time: self.env.now.since_epoch(),
            trace_hash: self.env.trace.hash(),
            knobs: self.knobs,
        }
    }

    /// Clients arrive spread over the arrival span, some in a rush around
    /// the terminate (so the backlog is full when the drain begins); the
    /// signals come when the knobs say.
    fn schedule_arrivals_and_signals(&mut self) {
        let k = &self.knobs;
        let rush_from = k.terminate_at.saturating_sub(Duration::from_millis(20));
        let rush_span = Duration::from_millis(25) + k.config.pre_stop;
        // The clients' arrivals, and up to three signals.
        self.env.reserve(self.clients.len() + 3);
        for c in 0..self.clients.len() {
            let at = if self.env.rng.percent(k.rush_percent) {
                rush_from + self.env.rng.upto(rush_span)
            } else {
                self.env.rng.upto(k.arrival_span)
            };
            self.env.at(Time::from_duration(at), Ev::ClientStart(c));
        }
        let first = match k.handoff {
            Some(Handoff::Instead) => Ev::Handoff,
            _ => Ev::Terminate,
        };
        self.env.at(Time::from_duration(k.terminate_at), first);
        if let Some(Handoff::After(d)) = k.handoff {
            self.env
                .at(Time::from_duration(k.terminate_at + d), Ev::Handoff);
        }
        if let Some(t) = k.second_terminate_at {
            self.env.at(Time::from_duration(t), Ev::Terminate);
        }
    }

    /// One core input, through the driver.
    fn input(&mut self, cause: Cause, f: impl FnOnce(&mut Server, Time)) {
        self.driver
            .input(&mut self.core, &mut self.checker, &mut self.env, cause, f);
    }

    fn world_event(&mut self, ev: Ev) {
        let World {
            env,
            core,
            kernel,
            driver,
            clients,
            checker,
            ..
        } = self;
        match ev {
            Ev::ClientStart(c) => {
                clients.get(c).start(kernel, checker, env);
            }
            Ev::ClientWake(c, k, wake) => clients.get(c).wake(k, wake, kernel, checker, env),
            Ev::ClientRead(c, k) => clients.get(c).read(k, kernel, checker, env),
            Ev::Arrive(k, dir) => {
                if let Some(total) = kernel.arrive(k, dir, env) {
                    debug_assert_eq!(dir, Dir::C2s);
                    checker.on_delivered(k, total, env);
                }
            }
            Ev::ServerRead(k) => self.carry_notice(Notice::ServerReadable(k)),
            Ev::AcceptReady => {
                if kernel.listener_woke() {
                    match (kernel.owner(), &mut self.successor) {
                        (Owner::Successor, Some(succ)) => {
                            succ.driver.accept_all(&mut succ.core, kernel, checker, env)
                        }
                        _ => driver.accept_all(core, kernel, checker, env),
                    }
                }
            }
            Ev::AppAnswer(srv, id) => self.app_answer(srv, id),
            Ev::AppStream(srv, id) => self.app_stream(srv, id),
            Ev::AppRead(srv, id) => {
                if self.app_mut(srv).read_again(id) {
                    self.read_upload(srv, id);
                }
            }
            Ev::Terminate => {
                let n = checker.on_stop(false, core);
                trace!(env, "signal terminate #{n}");
                self.input(Cause::Terminate, |s, now| s.handle_terminate(now));
            }
            Ev::Handoff => {
                checker.on_stop(true, core);
                trace!(env, "hand-off to a successor");
                // The successor is up and serving before the old server
                // lets go of the listener.
                self.successor.get_or_insert_with(|| Successor {
                    core: Server::new(self.knobs.config.clone()),
                    driver: DriverModel::new(self.knobs.read_buf, true),
                    app: App::new(&self.knobs, true),
                });
                self.input(Cause::Handoff, |s, now| s.handle_handoff(now));
            }
        }
    }

    /// Hands out what the kernel has to tell and what the cores asked their
    /// drivers to do, until nothing is left.
    fn settle(&mut self) {
        loop {
            if let Some(notice) = self.kernel.pop_notice() {
                self.notice(notice);
            } else if let Some((ev, cause)) = self.driver.pop_event() {
                self.carry_out(ev, cause);
            } else if let Some((ev, cause)) =
                self.successor.as_mut().and_then(|s| s.driver.pop_event())
            {
                self.successor_carry_out(ev, cause);
            } else {
                return;
            }
        }
    }

    fn notice(&mut self, notice: Notice) {
        // The driver reads a readable socket after its lag, if it has one.
        if let Notice::ServerReadable(k) = notice {
            let lag = self.knobs.read_lag;
            if !lag.is_zero() {
                let d = self.env.rng.upto(lag);
                return self.env.after(d, Ev::ServerRead(k));
            }
        }
        self.carry_notice(notice);
    }

    /// What the driver (or an upgraded connection's application) does on
    /// `notice`, now.
    fn carry_notice(&mut self, notice: Notice) {
        // An upgraded connection's socket is its application's.
        if let Notice::ServerReadable(k) | Notice::ServerWritable(k) | Notice::ServerReset(k) =
            notice
        {
            if let Some(srv) = self.upgraded_on(k) {
                return match notice {
                    Notice::ServerWritable(_) => self.echo_flush(srv, k),
                    _ => self.echo_read(srv, k),
                };
            }
        }
        let World {
            env,
            core,
            kernel,
            driver,
            clients,
            checker,
            successor,
            ..
        } = self;
        let (core, driver) = match (notice, successor) {
            (
                Notice::ServerReadable(k) | Notice::ServerWritable(k) | Notice::ServerReset(k),
                Some(succ),
            ) if succ.driver.has(k) => (&mut succ.core, &mut succ.driver),
            _ => (core, driver),
        };
        match notice {
            Notice::ServerReadable(k) => driver.read(k, core, kernel, checker, env),
            Notice::ServerWritable(k) => driver.write(k, core, kernel, checker, env),
            Notice::ServerReset(k) => driver.aborted(k, core, checker, env),
            Notice::ClientReadable(c, k) => clients.get(c).readable(k, kernel, checker, env),
            Notice::ClientWritable(c, k) => clients.get(c).writable(k, kernel, env),
            Notice::ClientReset(c, k, destroyed) => {
                checker.reset_reached(k, kernel, env);
                clients.get(c).reset(k, destroyed, kernel, checker, env);
            }
        }
    }

    /// Carries out one of core's events.
    fn carry_out(&mut self, ev: Event, cause: Cause) {
        trace!(self.env, "core event {ev:?} (from {cause:?})");
        if self.driver.exit().is_some() {
            return self.env.fail(Failure::Safety(format!(
                "S6: event {ev:?} carried out after Exit"
            )));
        }
        let World {
            env,
            core,
            kernel,
            driver,
            checker,
            ..
        } = self;
        match ev {
            Event::Request(id) => self.app_request(Srv::Main, id),
            Event::BodyReady(_)
            | Event::StreamWritable(_)
            | Event::Upgraded(_)
            | Event::StopUpgraded(_) => self.app_event(Srv::Main, ev),
            Event::Close(id, _) => {
                let k = driver.conn_of(id);
                driver.carry_out(ev, cause, core, kernel, checker, env);
                if let Some(k) = k {
                    self.app.closed(k);
                }
            }
            Event::Exit => {
                let report = core
                    .exit_report()
                    .expect("Exit comes with a report")
                    .clone();
                trace!(env, "exit report: {report}");
                checker.check_exit(&report, core, env);
                driver.exited(report);
            }
            other => driver.carry_out(other, cause, core, kernel, checker, env),
        }
    }

    /// One of the successor's events. It never stops, so it never asks
    /// for the backlog or exits (it counts what waits unread only before
    /// an idle close).
    fn successor_carry_out(&mut self, ev: Event, cause: Cause) {
        trace!(self.env, "successor event {ev:?} (from {cause:?})");
        let World {
            env,
            kernel,
            checker,
            successor: Some(succ),
            ..
        } = self
        else {
            return;
        };
        match ev {
            Event::Request(id) => self.app_request(Srv::Successor, id),
            Event::BodyReady(_)
            | Event::StreamWritable(_)
            | Event::Upgraded(_)
            | Event::StopUpgraded(_) => self.app_event(Srv::Successor, ev),
            Event::Close(id, _) => {
                let k = succ.driver.conn_of(id);
                succ.driver
                    .carry_out(ev, cause, &mut succ.core, kernel, checker, env);
                if let Some(k) = k {
                    succ.app.closed(k);
                }
            }
            Event::Exit | Event::DrainBacklog | Event::CloseListener | Event::Farewell(..) => env
                .fail(Failure::Safety(format!(
                    "the successor, never stopped, emitted {ev:?}"
                ))),
            other => succ
                .driver
                .carry_out(other, cause, &mut succ.core, kernel, checker, env),
        }
    }

    /// `Event::Request`: the application takes the request; the checker
    /// records it as handed; the answer comes now or later — or, for a body
    /// it reads first, once that body ended.
    fn app_request(&mut self, srv: Srv, id: RequestId) {
        let World {
            env,
            core,
            kernel,
            driver,
            clients,
            app,
            checker,
            successor,
            ..
        } = self;
        let (core, driver, app) = match (srv, successor) {
            (Srv::Successor, Some(s)) => (&mut s.core, &mut s.driver, &mut s.app),
            _ => (core, driver, app),
        };
        let Some(k) = driver.conn_of(id.conn()) else {
            return env.fail(Failure::Safety(format!(
                "driver contract: Request {id:?} on a connection the driver closed"
            )));
        };
        let streams_body = core.request_body(id).is_some();
        let Some(req) = core.request(id) else {
            // Handed at its head, a request whose body streams may be
            // refused (too slow, too large, malformed) in the same input:
            // the application never sees it, and the refusal answers it.
            if !self.knobs.config.stream_request_bodies {
                return env.fail(Failure::Safety(format!(
                    "driver contract: Request {id:?} that core cannot show"
                )));
            }
            let client = kernel.client_of(k);
            let Some((no, attempt)) = checker.next_to_hand(k) else {
                return env.fail(Failure::Safety(format!(
                    "driver contract: Request {id:?} on k{k}, whose client sent nothing more"
                )));
            };
            let Some(want) = clients.req(client, no) else {
                return;
            };
            let got = Got {
                client,
                no,
                attempt,
                token: request::token(client, no, attempt),
                raw_len: want.raw_len,
                fault: None,
                delay: None,
                http10: want.shape.http10,
                asks_close: want.shape.close,
                streams_body: true,
                reads_body: false,
            };
            trace!(env, "app never sees {} on k{k}: core refused it", got.token);
            checker.on_handed(k, id, &got, env);
            return;
        };
        let Some(got) = app.receive(id, k, kernel.client_of(k), req, streams_body, clients, env)
        else {
            return;
        };
        if !checker.on_handed(k, id, &got, env) {
            return;
        }
        if got.fault.is_some() {
            clients.app_fails(got.client, got.no, got.attempt);
        }
        if got.reads_body {
            driver.body_wanted(id, core, checker, env);
            return self.read_upload(srv, id);
        }
        match got.delay {
            None => self.app_answer(srv, id),
            Some(d) => env.after(d, Ev::AppAnswer(srv, id)),
        }
    }

    /// The application of `srv`.
    fn app_mut(&mut self, srv: Srv) -> &mut App {
        match (srv, &mut self.successor) {
            (Srv::Successor, Some(s)) => &mut s.app,
            _ => &mut self.app,
        }
    }

    /// Which server's application holds upgraded connection `k`, if one does.
    fn upgraded_on(&self, k: usize) -> Option<Srv> {
        if self.driver.is_upgraded(k) {
            return Some(Srv::Main);
        }
        self.successor
            .as_ref()
            .filter(|s| s.driver.is_upgraded(k))
            .map(|_| Srv::Successor)
    }

    /// One of core's events for the application: more of a streamed body
    /// arrived, a held-back producer may go on, a connection upgraded, or
    /// the drain tells an upgraded connection to stop.
    fn app_event(&mut self, srv: Srv, ev: Event) {
        match ev {
            Event::BodyReady(id) => self.read_upload(srv, id),
            Event::StreamWritable(id) => {
                if self.app_mut(srv).writable(id) {
                    self.app_stream(srv, id);
                }
            }
            Event::Upgraded(conn) => self.upgraded(srv, conn),
            Event::StopUpgraded(conn) => {
                let World {
                    env,
                    driver,
                    app,
                    checker,
                    successor,
                    ..
                } = self;
                let (driver, app) = match (srv, successor) {
                    (Srv::Successor, Some(s)) => (&s.driver, &mut s.app),
                    _ => (&*driver, app),
                };
                let Some(k) = driver.conn_of(conn) else {
                    return env.fail(Failure::Safety(format!(
                        "driver contract: StopUpgraded for {conn:?}, which is closed"
                    )));
                };
                checker.on_stop_upgraded(k, srv == Srv::Successor, env);
                if let Some(echo) = app.echo(k) {
                    echo.stopping = !echo.ignores_stop;
                    trace!(
                        env,
                        "app told to stop upgraded k{k} (heeds: {})",
                        echo.stopping
                    );
                }
                self.echo_flush(srv, k);
            }
            other => unreachable!("not the application's: {other:?}"),
        }
    }

    /// The application reads what arrived of `id`'s streamed body, tells
    /// core what it used, and reads on now, after its gap, or answers once
    /// the body ended.
    fn read_upload(&mut self, srv: Srv, id: RequestId) {
        let World {
            env,
            core,
            driver,
            app,
            checker,
            successor,
            ..
        } = self;
        let (core, driver, app) = match (srv, successor) {
            (Srv::Successor, Some(s)) => (&mut s.core, &mut s.driver, &mut s.app),
            _ => (core, driver, app),
        };
        let Some(k) = driver.conn_of(id.conn()) else {
            return;
        };
        let Some(body) = core.request_body(id) else {
            return;
        };
        let Some((used, later)) = app.read_upload(id, body.data, body.done, k, env) else {
            return;
        };
        if used > 0 {
            checker.on_body_read(driver.is_paused(k));
            driver.body_consumed(id, used, core, checker, env);
        }
        if app.upload_done(id) {
            let d = (!env.rng.percent(50)).then(|| app.read_gap(env));
            match d {
                None => self.app_answer(srv, id),
                Some(d) => env.after(d, Ev::AppAnswer(srv, id)),
            }
        } else if later {
            let d = app.read_gap(env);
            env.after(d, Ev::AppRead(srv, id));
        }
    }

    /// The next piece of `id`'s streamed body, its end, or the producer's
    /// stop; core must take or refuse it as the piece calls for.
    fn app_stream(&mut self, srv: Srv, id: RequestId) {
        let World {
            env,
            core,
            driver,
            app,
            checker,
            successor,
            ..
        } = self;
        let (core, driver, app) = match (srv, successor) {
            (Srv::Successor, Some(s)) => (&mut s.core, &mut s.driver, &mut s.app),
            _ => (core, driver, app),
        };
        let Some(piece) = app.next_piece(id, core.stream_room(id), env) else {
            return;
        };
        // The stream lives as long as its connection: only its end, or a
        // close, ends it — or, for one answering a request handed ahead,
        // a close decided before its turn (core says it ended).
        let live = driver
            .conn_of(id.conn())
            .is_some_and(|k| !checker.request_ended(k, id));
        let (offered, result, want) = match piece {
            Piece::Stop => return checker.on_producer_stopped(id),
            Piece::Data(bytes, crosses) => {
                let Some(r) = driver.stream_data(id, bytes, core, checker, env) else {
                    return;
                };
                let want = match (live, crosses) {
                    (false, _) => Err(StreamError::UnknownStream),
                    (true, true) => Err(StreamError::LengthMismatch),
                    (true, false) => Ok(()),
                };
                (bytes.len(), r, want)
            }
            Piece::End(short) => {
                let Some(r) = driver.stream_end(id, core, checker, env) else {
                    return;
                };
                let want = match (live, short) {
                    (false, _) => Err(StreamError::UnknownStream),
                    (true, true) => Err(StreamError::LengthMismatch),
                    (true, false) => Ok(()),
                };
                (0, r.map(|()| 0), want)
            }
        };
        if result.map(|_| ()) != want {
            return env.fail(Failure::Safety(format!(
                "app contract: streaming {id:?} ({offered} bytes offered, live {live}) got {result:?}, not {want:?}"
            )));
        }
        if offered > 0 {
            if let Ok(taken) = result {
                if taken > offered {
                    return env.fail(Failure::Safety(format!(
                        "app contract: core took {taken} of {offered} bytes offered for {id:?}"
                    )));
                }
            }
        }
        match app.piece_done(id, offered, result, env) {
            Next::After(d) => env.after(d, Ev::AppStream(srv, id)),
            Next::EndNow => self.app_stream(srv, id),
            Next::Writable | Next::Over => {}
        }
    }

    /// `Upgraded`: the socket is the application's; it echoes what came
    /// with the request and what arrives from now on.
    fn upgraded(&mut self, srv: Srv, conn: ebb_core::ConnId) {
        let World {
            env,
            core,
            driver,
            app,
            checker,
            successor,
            ..
        } = self;
        let (core, driver, app) = match (srv, successor) {
            (Srv::Successor, Some(s)) => (&mut s.core, &mut s.driver, &mut s.app),
            _ => (core, driver, app),
        };
        let Some(k) = driver.conn_of(conn) else {
            return env.fail(Failure::Safety(format!(
                "driver contract: Upgraded for {conn:?}, which is closed"
            )));
        };
        checker.on_upgraded(k, srv == Srv::Successor, env);
        driver.hand_to_app(k);
        app.upgraded(k, conn, env);
        let early = core.take_upgraded_input(conn);
        trace!(
            env,
            "app echoes upgraded k{k} ({} early bytes)",
            early.len()
        );
        if let Some(echo) = app.echo(k) {
            echo.outbox.extend_from_slice(&early);
            echo.echoed += early.len() as u64;
        }
        self.echo_flush(srv, k);
        self.echo_read(srv, k);
    }

    /// The echo application reads upgraded connection `k` until it would
    /// block; the client's FIN or reset ends it (core is told).
    fn echo_read(&mut self, srv: Srv, k: usize) {
        let read_buf = self.knobs.read_buf;
        loop {
            let World {
                env,
                core,
                kernel,
                driver,
                app,
                checker,
                successor,
                ..
            } = self;
            let (core, driver, app) = match (srv, successor) {
                (Srv::Successor, Some(s)) => (&mut s.core, &mut s.driver, &mut s.app),
                _ => (core, driver, app),
            };
            let Some(echo) = app.echo(k) else {
                return;
            };
            match kernel.server_recv(k, read_buf) {
                Recv::WouldBlock => return,
                Recv::Data(bytes) => {
                    // After its FIN the application has nothing to echo with.
                    if !echo.shut {
                        echo.outbox.extend_from_slice(bytes);
                        echo.echoed += bytes.len() as u64;
                    }
                    self.echo_flush(srv, k);
                }
                Recv::Eof | Recv::Reset => {
                    let stopped = echo.stopping;
                    trace!(
                        env,
                        "app closes upgraded k{k} (stop notice heeded: {stopped})"
                    );
                    if stopped {
                        app.stopped_by_notice();
                    }
                    return driver.upgraded_closed(k, core, checker, env);
                }
            }
        }
    }

    /// Writes what the echo application owes upgraded connection `k`, as
    /// far as the socket has room; once told to stop, it shuts its write
    /// side when nothing is left to write.
    fn echo_flush(&mut self, srv: Srv, k: usize) {
        let World {
            env,
            kernel,
            app,
            successor,
            ..
        } = self;
        let app = match (srv, successor) {
            (Srv::Successor, Some(s)) => &mut s.app,
            _ => app,
        };
        let Some(echo) = app.echo(k) else {
            return;
        };
        if kernel.server_end(k) != ServerEnd::Open {
            return;
        }
        if !echo.outbox.is_empty() {
            let n = echo
                .outbox
                .len()
                .min(kernel.room(k, Dir::S2c, echo.outbox.len()));
            if n == 0 {
                return kernel.wait_for_room(k, Dir::S2c);
            }
            kernel.send(k, Dir::S2c, &[&echo.outbox[..n]], env);
            echo.outbox.drain(..n);
            if !echo.outbox.is_empty() {
                return kernel.wait_for_room(k, Dir::S2c);
            }
        }
        if echo.stopping && !echo.shut {
            echo.shut = true;
            trace!(env, "app shuts its write side of upgraded k{k}");
            kernel.server_half_close(k, env);
        }
    }

    /// The application answers `id`; `handle_response` (or
    /// `handle_stream_start`, `handle_upgrade`) must return what the answer
    /// calls for (an invalid one is refused, and core answers 500). A
    /// stream's first piece follows after its gap.
    fn app_answer(&mut self, srv: Srv, id: RequestId) {
        let World {
            env,
            core,
            driver,
            checker,
            app,
            successor,
            ..
        } = self;
        let (core, driver, app) = match (srv, successor) {
            (Srv::Successor, Some(s)) => (&mut s.core, &mut s.driver, &mut s.app),
            _ => (core, driver, app),
        };
        let Some((answer, body_unread)) = app.answer(id, env) else {
            return;
        };
        let live = core.request(id).is_some();
        let k = driver.conn_of(id.conn());
        if let Some(k) = k {
            checker.on_app_answered(k, id, core.phase(), body_unread);
        }
        let Some(result) = driver.respond(id, &answer, core, checker, env) else {
            return;
        };
        let want = answer.expected(live);
        if result != want {
            return env.fail(Failure::Safety(format!(
                "app contract: answering {} ({:?}, live {live}) returned {result:?}, not {want:?}",
                answer.token, answer.fault
            )));
        }
        if let AnswerKind::Stream { .. } = answer.kind {
            match (result, k) {
                (Ok(()), Some(k)) => {
                    checker.on_stream_started(k, id);
                    let d = app.stream_gap(id, env);
                    env.after(d, Ev::AppStream(srv, id));
                }
                _ => app.stream_refused(id),
            }
        }
    }
}
