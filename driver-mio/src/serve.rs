//! The coordinator: starts the workers, turns shutdown requests into a
//! terminate for every worker, logs stop signals (each worker receives them
//! itself), and waits until all workers have exited.

use std::io;
use std::net::TcpListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use ebb_core::{Config, DrainReport};
use mio::{Events, Poll, Token, Waker};
use signal_hook::consts::SIGTERM;

use crate::handler::{Handler, Message};
use crate::shutdown::{stop_signals, ShutdownHandle};
use crate::worker::Worker;

const WAKE: Token = Token(0);
const SIGNALS: Token = Token(1);

/// What [`run`] needs.
pub(crate) struct Setup<H> {
    pub(crate) listeners: Vec<TcpListener>,
    pub(crate) config: Config,
    pub(crate) signals: bool,
    pub(crate) shutdown: ShutdownHandle,
    pub(crate) handler: H,
}

/// Runs the workers until every one has exited.
pub(crate) fn run<H: Handler>(setup: Setup<H>) -> io::Result<DrainReport> {
    let mut poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    let mut signals = if setup.signals {
        Some(stop_signals(poll.registry(), SIGNALS)?)
    } else {
        None
    };
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
            setup.signals,
            handler.clone(),
            start,
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
    setup.shutdown.set_waker(Some(waker.clone()));

    let pre_stop = setup.config.pre_stop;
    let log_stop = |why: &str, stops: &mut usize| {
        *stops += 1;
        if *stops == 1 && pre_stop.is_zero() {
            log::info!("{why}: draining");
        } else if *stops == 1 {
            log::info!("{why}: stopping, draining after the {pre_stop:?} pre-stop");
        } else {
            log::warn!("{why} again: forcing exit");
        }
    };
    let terminate = |why: &str, stops: &mut usize| {
        log_stop(why, stops);
        for inbox in &inboxes {
            inbox.send(Message::Terminate);
        }
    };
    let mut stops = 0;
    let mut handled_requests = 0;
    let mut reports = Vec::with_capacity(count);
    let mut failure = None;
    let mut events = Events::with_capacity(16);
    while reports.len() + usize::from(failure.is_some()) < count {
        // Shutdown requests made before the waker was installed count too.
        let requests = setup.shutdown.requests();
        while handled_requests < requests {
            handled_requests += 1;
            terminate("shutdown requested", &mut stops);
        }
        if let Some(signals) = &mut signals {
            for signal in signals.pending() {
                let name = if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                log_stop(name, &mut stops);
            }
        }
        while let Ok((number, result)) = done_rx.try_recv() {
            match result {
                Ok(report) => reports.push(report),
                Err(e) => {
                    log::error!("worker {number} failed: {e}");
                    if stops == 0 {
                        terminate("a worker failed", &mut stops);
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

/// One report for all workers (they share one clock epoch).
fn combine(reports: &[DrainReport]) -> DrainReport {
    let mut all = reports[0].clone();
    for report in &reports[1..] {
        all.merge(report);
    }
    all
}
