//! The signals ebb handles, and what each one asks for.
//!
//! Handling a signal at all is what matters most: the default action of
//! every signal here ends the process at once, mid-request. They are all
//! registered once, at the start of [`Builder::serve`](crate::Builder::serve),
//! before any listener or worker exists, so from then on none is lost: it
//! waits in the registration until the coordinator reads it.

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
pub(crate) fn register() -> io::Result<Signals> {
    let signals = HANDLED.map(|(signal, _, _)| signal);
    let _held = HeldBack::new(&signals)?;
    Signals::new(signals)
}

/// Signals blocked on this thread until dropped, then the thread's mask as
/// it was.
///
/// signal-hook installs each handler a moment before the handler can reach
/// the registration: a signal in between would be dropped. Held back, it is
/// delivered when the registration is complete (in the `ebb` binary no other
/// thread exists yet to take it instead).
struct HeldBack {
    previous: libc::sigset_t,
}

impl HeldBack {
    fn new(signals: &[c_int]) -> io::Result<HeldBack> {
        // SAFETY: sigemptyset/sigaddset initialise and fill the sets, and
        // pthread_sigmask only changes this thread's mask.
        unsafe {
            let mut set = std::mem::zeroed::<libc::sigset_t>();
            let mut previous = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut set);
            for &signal in signals {
                libc::sigaddset(&mut set, signal);
            }
            match libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous) {
                0 => Ok(HeldBack { previous }),
                errno => Err(io::Error::from_raw_os_error(errno)),
            }
        }
    }
}

impl Drop for HeldBack {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new`; cannot fail with a valid `how`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
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
