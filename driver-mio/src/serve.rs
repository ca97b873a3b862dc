//! The coordinator: starts the workers, turns stop signals into stop
//! requests, logs every request once and wakes every worker to apply it,
//! runs hot upgrades, and waits until all workers have exited.

use std::io::{self, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ebb_core::{Config, DrainReport};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook_mio::v1_0::Signals;

use crate::balance::Balance;
use crate::exit_deadline::ExitDeadline;
use crate::handler::{Handler, Inbox};
use crate::notify::notify;
use crate::pidfile::PidFile;
use crate::shutdown::{ShutdownHandle, Stop};
use crate::signals::{meaning, Action};
use crate::stuck::{self, StuckWatch};
use crate::upgrade::{Program, Upgrader};
use crate::worker::{on_core_clock, Common, Worker};

const WAKE: Token = Token(0);
const SIGNALS: Token = Token(1);
const UPGRADE: Token = Token(2);

/// What [`run`] needs.
pub(crate) struct Setup<H> {
    pub(crate) listeners: Vec<TcpListener>,
    /// The listeners were bound here (see `listener::Listeners`): a worker
    /// given up on may have its socket shut down.
    pub(crate) bound_here: bool,
    pub(crate) config: Config,
    /// The handled signals, registered before the listeners were made;
    /// `None` when the embedding program handles signals itself.
    pub(crate) signals: Option<Signals>,
    pub(crate) shutdown: ShutdownHandle,
    pub(crate) handler: H,
    /// The successor's command (or why there is none) and how long it has
    /// to be ready.
    pub(crate) upgrade: (io::Result<Program>, Duration),
    pub(crate) pid_file: Option<PidFile>,
    /// When this process is a successor: where to say it serves.
    pub(crate) ready: Option<OwnedFd>,
    /// The access log and the observer.
    pub(crate) observing: crate::observer::Observing,
}

/// Runs the workers until every one has exited.
pub(crate) fn run<H: Handler>(setup: Setup<H>) -> io::Result<DrainReport> {
    let mut poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    let mut signals = setup.signals;
    if let Some(signals) = &mut signals {
        poll.registry()
            .register(signals, SIGNALS, Interest::READABLE)?;
    }
    setup.shutdown.set_waker(Some(waker.clone()));
    let addr = setup.listeners[0].local_addr()?;
    let (program, upgrade_timeout) = setup.upgrade;
    let mut upgrader = Upgrader::new(
        program,
        upgrade_timeout,
        crate::listener::distinct_sockets(&setup.listeners)?,
        setup.pid_file.clone(),
        UPGRADE,
    );
    let count = setup.listeners.len();
    // Workers that share one socket spread its connections among them.
    let shared = count > 1 && crate::listener::distinct_sockets(&setup.listeners)?.len() == 1;
    let start = Instant::now();
    let balance = Balance::new(count, shared);
    let handler = Arc::new(setup.handler);
    let (done_tx, done_rx) = mpsc::channel();
    let mut inboxes = Vec::with_capacity(count);
    let mut threads = Vec::with_capacity(count);
    let common = Common {
        stops: setup.shutdown.clone(),
        start,
        balance: balance.clone(),
    };
    // Each worker's listening descriptor, with its socket's inode: what
    // `stop_listening` shuts if the worker is given up on.
    let listening = setup
        .listeners
        .iter()
        .map(|l| Ok((l.as_raw_fd(), crate::listener::inode(l.as_raw_fd())?)))
        .collect::<io::Result<Vec<_>>>()?;
    for (number, listener) in setup.listeners.into_iter().enumerate() {
        let (worker, inbox) = Worker::new(
            number,
            listener,
            setup.config.clone(),
            handler.clone(),
            setup.observing.clone(),
            common.clone(),
        )
        .map_err(short_of_descriptors(count))?;
        inboxes.push(inbox);
        let done_tx = done_tx.clone();
        let waker = waker.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ebb-worker-{number}"))
            .spawn(move || {
                let result = catch_unwind(AssertUnwindSafe(|| worker.run()))
                    .unwrap_or_else(|_| Err(io::Error::other("worker panicked")));
                // Fails only for a worker given up on (see `ExitDeadline`)
                // whose handler returned after `serve` did: nobody waits.
                let _ = done_tx.send((number, result));
                if let Err(e) = waker.wake() {
                    log::error!("cannot wake the coordinator: {e}");
                }
            })?;
        threads.push(thread);
    }
    balance.set_inboxes(inboxes.iter().cloned().collect());
    let workers = if count == 1 { "worker" } else { "workers" };
    log::info!("ebb listening on {addr} with {count} {workers}");
    // Every worker's listener is registered on its poll: connections that
    // come from now on are seen. Say so.
    announce_ready(setup.pid_file.as_ref(), setup.ready);

    let mut stops = Stops {
        shutdown: &setup.shutdown,
        inboxes: &inboxes,
        pre_stop: setup.config.pre_stop,
        logged: 0,
        handed_off: false,
    };
    let mut upgrades_seen = 0;
    let mut reports = Vec::with_capacity(count);
    let mut failure = None;
    // Which workers have ended, by number: only those are joined.
    let mut ended = vec![false; count];
    let mut exit_deadline = ExitDeadline::new(setup.config.pre_stop, setup.config.drain_timeout);
    let mut stuck_watch = StuckWatch::new(count);
    let mut events = Events::with_capacity(16);
    while reports.len() + usize::from(failure.is_some()) < count {
        // Signals that came before this loop first ran, even before the
        // listeners were bound, are read here too.
        if let Some(signals) = &mut signals {
            for signal in signals.pending() {
                match meaning(signal) {
                    (name, Action::Stop) => {
                        upgrader.abandon(name);
                        stops.request(name);
                    }
                    (name, Action::Upgrade) => {
                        upgrader.request(name, &setup.shutdown, poll.registry())
                    }
                    (name, Action::Ignore(why)) => log::info!("{name} ignored: {why}"),
                }
            }
        }
        while upgrades_seen < setup.shutdown.upgrades() {
            upgrades_seen += 1;
            upgrader.request("upgrade requested", &setup.shutdown, poll.registry());
        }
        if setup.shutdown.requests() > 0 {
            upgrader.abandon("shutdown requested");
        }
        stops.pass_on_handle_requests();
        if upgrader.progress(&setup.shutdown, poll.registry()) {
            stops.handed_off = true;
            stops.wake_workers();
        }
        while let Ok((number, result)) = done_rx.try_recv() {
            ended[number] = true;
            match result {
                Ok(report) => reports.push(report),
                Err(e) => {
                    log::error!("worker {number} failed: {e}");
                    if setup.shutdown.requests() == 0 {
                        stops.request("a worker failed");
                    }
                    failure.get_or_insert(e);
                }
            }
        }
        if reports.len() + usize::from(failure.is_some()) >= count {
            break;
        }
        let now = Instant::now();
        stuck_watch.look(&balance, now, |worker, lasted, open| {
            log::warn!(
                "worker {worker} has been in one handler call for {}s: a handler that blocks \
                 holds its worker's loop, so its {open} connections wait (and would hold the \
                 drain); answer from another thread",
                lasted.as_secs()
            );
        });
        exit_deadline.observe(&setup.shutdown, now);
        if exit_deadline.passed(now) {
            reports.push(give_up_on_stuck(&ended, &exit_deadline, start, now));
            // Before the workers are told: one that comes back then exits
            // and closes its descriptor, whose number could be reused.
            if setup.bound_here && !setup.shutdown.handed_off() {
                stop_listening(&listening, &ended);
            }
            balance.give_up();
            break;
        }
        let timeout = [upgrader.timeout(), exit_deadline.timeout(now)]
            .into_iter()
            .flatten()
            .fold(stuck::LOOK_EVERY, Duration::min);
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    setup.shutdown.set_waker(None);
    // A worker given up on is left running, detached: its thread ends with
    // the process, or by itself if its handler ever returns.
    for (thread, _) in threads.into_iter().zip(ended).filter(|(_, ended)| *ended) {
        if thread.join().is_err() {
            log::error!("a worker thread panicked");
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let report = combine(&reports);
    log::info!("{report}");
    if let Some(pid_file) = &setup.pid_file {
        // After a hand-off it names the successor, and stays.
        pid_file.remove_if_names(std::process::id());
    }
    Ok(report)
}

/// Tells whoever waits that this process serves: the pid file, the service
/// manager (`READY=1`), and the process this one upgrades (its pid on the
/// readiness pipe, which is then closed), in that order, so by the time the
/// old process hands over, the pid file names this one.
fn announce_ready(pid_file: Option<&PidFile>, ready: Option<OwnedFd>) {
    let pid = std::process::id();
    if let Some(pid_file) = pid_file {
        pid_file.write_or_log(pid);
    }
    notify("READY=1");
    if let Some(ready) = ready {
        let mut pipe = std::fs::File::from(ready);
        match pipe.write_all(format!("{pid}\n").as_bytes()) {
            Ok(()) => log::info!("told the previous process that this one ({pid}) serves"),
            Err(e) => log::warn!("cannot tell the previous process that this one serves: {e}"),
        }
    }
}

/// The coordinator's side of the stop requests: each one is logged once, and
/// every worker is woken to apply it (each counts the requests it has applied).
struct Stops<'a> {
    shutdown: &'a ShutdownHandle,
    inboxes: &'a [Arc<Inbox>],
    pre_stop: Duration,
    /// Requests logged so far.
    logged: usize,
    /// The listeners were handed to a successor: the drain is under way.
    handed_off: bool,
}

impl Stops<'_> {
    /// Makes one stop request for `why` (a signal's name, or a failure).
    fn request(&mut self, why: &str) {
        match self.shutdown.request() {
            Stop::Counted => self.log(why),
            Stop::AlreadyDraining => {
                log::info!("{why}: already draining after the hand-off (again to force the exit)")
            }
        }
        self.wake_workers();
    }

    /// Logs and passes on the requests made through a [`ShutdownHandle`]
    /// since the last look.
    fn pass_on_handle_requests(&mut self) {
        let requests = self.shutdown.requests();
        if self.logged < requests {
            while self.logged < requests {
                self.log("shutdown requested");
            }
            self.wake_workers();
        }
    }

    fn log(&mut self, why: &str) {
        self.logged += 1;
        let pre_stop = self.pre_stop;
        if self.logged > 1 || self.handed_off {
            log::warn!("{why} again: forcing exit");
        } else if pre_stop.is_zero() {
            notify("STOPPING=1");
            log::info!("{why}: draining");
        } else {
            notify("STOPPING=1");
            log::info!("{why}: stopping, draining after the {pre_stop:?} pre-stop");
        }
    }

    fn wake_workers(&self) {
        for inbox in self.inboxes {
            inbox.wake();
        }
    }
}

/// The part of the report for the workers that have not ended by the time
/// the exit could wait no longer (see [`ExitDeadline`]): each is logged, and
/// counted as stuck; the exit counts as forced. Its times are on the
/// workers' clock (epoch `start`), so it combines with their reports.
fn give_up_on_stuck(
    ended: &[bool],
    exit_deadline: &ExitDeadline,
    start: Instant,
    now: Instant,
) -> DrainReport {
    let stopped_at = exit_deadline.stopped_at().unwrap_or(now);
    let mut report = DrainReport::new(on_core_clock(start, stopped_at));
    for (number, _) in ended.iter().enumerate().filter(|(_, ended)| !**ended) {
        log::error!(
            "worker {number} has not exited {:?} after the stop: it is stuck, most likely in a \
             handler that blocks; giving up on it, and on what it holds",
            now.saturating_duration_since(stopped_at)
        );
        report.stuck_workers += 1;
    }
    report.forced = Some(exit_deadline.why());
    report.exited_at = on_core_clock(start, now);
    report
}

/// Stops the listening sockets of the workers that have not ended, once
/// given up on: no client is queued any more where nobody will accept it,
/// and the port is free for the embedding program to bind again. Shut down
/// rather than closed, as each descriptor is its worker's to close; and only
/// while it is still the socket it was (its inode), as a worker may have
/// closed it in its drain and the number been reused since. Only for
/// sockets ebb bound itself, and not after a hand-off: a service manager's,
/// a predecessor's, the embedding program's or a successor's socket would
/// stop for them too (systemd fails a socket unit whose socket was shut).
/// Workers sharing one socket have one inode: it is shut down once.
fn stop_listening(listening: &[(RawFd, u64)], ended: &[bool]) {
    let mut done: Vec<u64> = Vec::new();
    for (&(fd, inode), _) in listening.iter().zip(ended).filter(|(_, ended)| !**ended) {
        if done.contains(&inode) {
            continue;
        }
        done.push(inode);
        if crate::listener::inode(fd).is_ok_and(|now| now == inode) {
            // SAFETY: a plain syscall on a descriptor that is open (its
            // inode was just read); it changes no memory.
            if unsafe { libc::shutdown(fd, libc::SHUT_RDWR) } < 0 {
                log::warn!(
                    "cannot stop listening on a stuck worker's socket: {}",
                    io::Error::last_os_error()
                );
            }
        }
    }
}

/// One report for all workers: counts summed, each phase from its earliest
/// start to its latest end (all workers share one clock epoch).
fn combine(reports: &[DrainReport]) -> DrainReport {
    let mut all = reports[0].clone();
    for report in &reports[1..] {
        all.merge(report);
    }
    all
}

/// Names the likely cause of a failure for want of descriptors (`EMFILE`)
/// at start: each of `workers` needs a few of its own (a listener, a poll,
/// a waker), and many workers can outrun the process's limit.
pub(crate) fn short_of_descriptors(workers: usize) -> impl Fn(io::Error) -> io::Error {
    move |e| {
        if e.raw_os_error() == Some(libc::EMFILE) {
            io::Error::new(
                e.kind(),
                format!("{e}, with {workers} workers: each needs descriptors of its own (see `ulimit -n`)"),
            )
        } else {
            e
        }
    }
}
