//! The signals ebb handles, and what each one asks for.
//!
//! Handling a signal at all is what matters most: the default action of
//! every signal here ends the process at once, mid-request. They are all
//! registered once, at the start of [`Builder::serve`](crate::Builder::serve),
//! before any listener or worker exists, so from then on none is lost: it
//! waits in the registration until the coordinator reads it. Threads the
//! program started before are the one way to lose one during the
//! registration: [`hold_back_signals`] closes it.

use std::io;
use std::os::raw::c_int;

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_mio::v1_0::Signals;

/// What ebb does on a signal it handles.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Action {
    /// One stop request, like [`ShutdownHandle::shutdown`](crate::ShutdownHandle::shutdown):
    /// the first drains, the next forces the exit.
    Stop,
    /// A hot upgrade, like [`ShutdownHandle::upgrade`](crate::ShutdownHandle::upgrade).
    Upgrade,
    /// Logged and otherwise ignored, for this reason.
    Ignore(&'static str),
}

/// Every signal ebb handles: its number, its name and its action. SIGQUIT
/// drains like SIGTERM, as it does for nginx; SIGUSR2 starts a hot upgrade,
/// as it does for nginx and unicorn; SIGHUP and SIGUSR1 are taken only so
/// they cannot kill ebb.
const HANDLED: [(c_int, &str, Action); 6] = [
    (SIGTERM, "SIGTERM", Action::Stop),
    (SIGINT, "SIGINT", Action::Stop),
    (SIGQUIT, "SIGQUIT", Action::Stop),
    (
        SIGHUP,
        "SIGHUP",
        Action::Ignore("ebb has no configuration to reload"),
    ),
    (
        SIGUSR1,
        "SIGUSR1",
        Action::Ignore("ebb has no log file to reopen"),
    ),
    (SIGUSR2, "SIGUSR2", Action::Upgrade),
];

/// Installs the handling of every signal in [`HANDLED`]; the caller
/// registers the result on its `Poll` and reads it with `pending()`.
///
/// signal-hook installs each handler a moment before the handler can reach
/// the registration: a signal in between would be dropped. So the signals
/// are held back on this thread meanwhile, and then taken on it for good,
/// whatever its mask was: one that came in between is delivered once the
/// registration is complete. A thread started earlier that does not hold
/// them back could still take one in between, which is what
/// [`hold_back_signals`] is for.
pub(crate) fn register() -> io::Result<Signals> {
    let signals = HANDLED.map(|(signal, _, _)| signal);
    mask(libc::SIG_BLOCK, &signals)?;
    let registered = Signals::new(signals);
    mask(libc::SIG_UNBLOCK, &signals)?;
    registered
}

/// Holds back the signals ebb handles (SIGTERM, SIGINT, SIGQUIT, SIGHUP,
/// SIGUSR1, SIGUSR2) on the calling thread and on every thread it starts
/// from then on, until [`Builder::serve`](crate::Builder::serve) takes them
/// on the thread that serves.
///
/// Call it first thing in `main` if the program starts threads (a pool, a
/// timer) before it serves: a stop signal sent while ebb installs its
/// handlers could otherwise land on such a thread a moment too early, and
/// be lost. Held back, it waits until ebb can take it. Not needed with
/// [`Builder::signals(false)`](crate::Builder::signals).
pub fn hold_back_signals() -> io::Result<()> {
    mask(libc::SIG_BLOCK, &HANDLED.map(|(signal, _, _)| signal))
}

/// Blocks or unblocks (`how`) `signals` on the calling thread.
fn mask(how: c_int, signals: &[c_int]) -> io::Result<()> {
    // SAFETY: sigemptyset/sigaddset initialise and fill the set, and
    // pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        match libc::pthread_sigmask(how, &set, std::ptr::null_mut()) {
            0 => Ok(()),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// The name and action of `signal`. signal-hook reports only the signals
/// [`register`] installed; any other number would be logged and ignored.
pub(crate) fn meaning(signal: c_int) -> (&'static str, Action) {
    HANDLED
        .iter()
        .find(|(number, _, _)| *number == signal)
        .map_or(
            ("an unregistered signal", Action::Ignore("not handled")),
            |&(_, name, action)| (name, action),
        )
}
