//! Where the server is in its life. Each phase carries the data it needs —
//! the drain its deadline and its report — so there is no listener flag or
//! optional report beside the phase to keep in step with it by hand.

use crate::report::DrainReport;
use crate::time::Time;

/// Where the server is in its life, as a driver or application sees it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Accepting and serving.
    Serving,
    /// Told to stop, but still accepting and serving until `until`, so load
    /// balancers can notice (`is_stopping()` is true).
    PreStop {
        /// When the drain proper begins.
        until: Time,
    },
    /// Finishing what was begun; exit no later than `deadline`.
    Draining {
        /// The forced exit.
        deadline: Time,
    },
    /// Exit was emitted; the server does nothing more.
    Exited,
}

/// The phase with its data: core's own view of [`Phase`].
#[derive(Debug)]
pub(crate) enum Lifecycle {
    Serving,
    PreStop { until: Time, report: DrainReport },
    Draining(Drain),
    Exited(DrainReport),
}

/// The drain under way.
#[derive(Debug)]
pub(crate) struct Drain {
    /// The forced exit.
    pub deadline: Time,
    /// What has happened so far; its `listener_closed_at` is the listener's
    /// state (open, and being drained of its backlog, until it is set).
    pub report: DrainReport,
}

impl Drain {
    /// Whether the driver has been told to close the listener. Until then it
    /// is accepting the backlog.
    pub fn listener_closed(&self) -> bool {
        self.report.listener_closed_at.is_some()
    }
}

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        match self {
            Lifecycle::Serving => Phase::Serving,
            Lifecycle::PreStop { until, .. } => Phase::PreStop { until: *until },
            Lifecycle::Draining(drain) => Phase::Draining {
                deadline: drain.deadline,
            },
            Lifecycle::Exited(_) => Phase::Exited,
        }
    }

    pub fn drain(&self) -> Option<&Drain> {
        match self {
            Lifecycle::Draining(drain) => Some(drain),
            _ => None,
        }
    }

    pub fn drain_mut(&mut self) -> Option<&mut Drain> {
        match self {
            Lifecycle::Draining(drain) => Some(drain),
            _ => None,
        }
    }

    /// The report of the stop under way, from `terminate` on.
    pub fn report_mut(&mut self) -> Option<&mut DrainReport> {
        match self {
            Lifecycle::PreStop { report, .. } => Some(report),
            Lifecycle::Draining(drain) => Some(&mut drain.report),
            Lifecycle::Serving | Lifecycle::Exited(_) => None,
        }
    }

    /// When the phase ends on its own: the end of PreStop, or the drain
    /// deadline.
    pub fn deadline(&self) -> Option<Time> {
        match self {
            Lifecycle::PreStop { until, .. } => Some(*until),
            Lifecycle::Draining(drain) => Some(drain.deadline),
            Lifecycle::Serving | Lifecycle::Exited(_) => None,
        }
    }
}
