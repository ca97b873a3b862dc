//! The coordinator: starts the workers, turns stop signals into stop
//! requests, logs every request once and wakes every worker to apply it, and
//! waits until all workers have exited.

use std::io;
use std::net::TcpListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ebb_core::{Config, DrainReport};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook_mio::v1_0::Signals;

use crate::handler::{Handler, Inbox};
use crate::shutdown::ShutdownHandle;
use crate::signals::{meaning, Action};
use crate::worker::Worker;

const WAKE: Token = Token(0);
const SIGNALS: Token = Token(1);

/// What [`run`] needs.
pub(crate) struct Setup<H> {
    pub(crate) listeners: Vec<TcpListener>,
    pub(crate) config: Config,
    /// The handled signals, registered before the listeners were made;
    /// `None` when the embedding program handles signals itself.
    pub(crate) signals: Option<Signals>,
    pub(crate) shutdown: ShutdownHandle,
    pub(crate) handler: H,
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
    let count = setup.listeners.len();
    let start = Instant::now();
    let handler = Arc::new(setup.handler);
    let (done_tx, done_rx) = mpsc::channel();
    let mut inboxes = Vec::with_capacity(count);
    let mut threads = Vec::with_capacity(count);
    for (number, listener) in setup.listeners.into_iter().enumerate() {
        let (worker, inbox) = Worker::new(
            number,
            listener,
            setup.config.clone(),
            setup.shutdown.clone(),
            handler.clone(),
            start,
            setup.observing.clone(),
        )?;
        inboxes.push(inbox);
        let done_tx = done_tx.clone();
        let waker = waker.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ebb-worker-{number}"))
            .spawn(move || {
                let result = catch_unwind(AssertUnwindSafe(|| worker.run()))
                    .unwrap_or_else(|_| Err(io::Error::other("worker panicked")));
                // The coordinator outlives every worker, so this cannot fail.
                let _ = done_tx.send((number, result));
                if let Err(e) = waker.wake() {
                    log::error!("cannot wake the coordinator: {e}");
                }
            })?;
        threads.push(thread);
    }
    log::info!("ebb listening on {addr} with {count} workers");

    let mut stops = Stops {
        shutdown: &setup.shutdown,
        inboxes: &inboxes,
        pre_stop: setup.config.pre_stop,
        logged: 0,
    };
    let mut reports = Vec::with_capacity(count);
    let mut failure = None;
    let mut events = Events::with_capacity(16);
    while reports.len() + usize::from(failure.is_some()) < count {
        // Signals that came before this loop first ran, even before the
        // listeners were bound, are read here too.
        if let Some(signals) = &mut signals {
            for signal in signals.pending() {
                match meaning(signal) {
                    (name, Action::Stop) => stops.request(name),
                    (name, Action::Ignore(why)) => log::info!("{name} ignored: {why}"),
                }
            }
        }
        stops.pass_on_handle_requests();
        while let Ok((number, result)) = done_rx.try_recv() {
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
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    setup.shutdown.set_waker(None);
    for thread in threads {
        if thread.join().is_err() {
            log::error!("a worker thread panicked");
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let report = combine(&reports);
    log::info!("{report}");
    Ok(report)
}

/// The coordinator's side of the stop requests: each one is logged once, and
/// every worker is woken to apply it (each counts the requests it has applied).
struct Stops<'a> {
    shutdown: &'a ShutdownHandle,
    inboxes: &'a [Arc<Inbox>],
    pre_stop: Duration,
    /// Requests logged so far.
    logged: usize,
}

impl Stops<'_> {
    /// Makes one stop request for `why` (a signal's name, or a failure).
    fn request(&mut self, why: &str) {
        self.shutdown.request();
        self.log(why);
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
        if self.logged > 1 {
            log::warn!("{why} again: forcing exit");
        } else if pre_stop.is_zero() {
            log::info!("{why}: draining");
        } else {
            log::info!("{why}: stopping, draining after the {pre_stop:?} pre-stop");
        }
    }

    fn wake_workers(&self) {
        for inbox in self.inboxes {
            inbox.wake();
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
