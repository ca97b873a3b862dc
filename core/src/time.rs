//! Time as an argument: core never reads a clock.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time, measured from an epoch the driver chooses (the mio driver
/// uses the moment it started; the simulator uses virtual zero).
///
/// Core only compares and offsets these values, so any monotonic source works.
/// Inputs that carry a `Time` earlier than one core has already seen are
/// treated as that later time: time never runs backwards inside core.
///
/// Kept as nanoseconds in a `u64` (good for 584 years): every deadline is
/// one addition and one comparison, and a timer link stays small.
#[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

impl Time {
    /// The epoch.
    pub const ZERO: Time = Time(0);

    /// The time `since` after the epoch (saturating past 584 years).
    pub const fn from_duration(since: Duration) -> Time {
        Time(Span::from_duration(since).0)
    }

    /// The time `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Time {
        Time(ms.saturating_mul(1_000_000))
    }

    /// The time `ns` nanoseconds after the epoch.
    pub const fn from_nanos(ns: u64) -> Time {
        Time(ns)
    }

    /// Nanoseconds after the epoch: the inverse of [`Time::from_nanos`].
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// How long after the epoch this is.
    pub const fn since_epoch(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// How long after `earlier` this is; zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    /// Saturates instead of overflowing, so a huge configured timeout means "never".
    fn add(self, rhs: Duration) -> Time {
        self + Span::from_duration(rhs)
    }
}

/// A length of time as core adds it to a [`Time`]: nanoseconds in a `u64`,
/// converted from a `Duration` once (saturating past 584 years). Adding a
/// `Duration` converts its 128-bit nanoseconds on every addition; the
/// timeouts every connection's deadline runs on are kept as spans instead,
/// so a deadline is one saturating addition.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Span(u64);

impl Span {
    pub const fn from_duration(length: Duration) -> Span {
        let nanos = length.as_nanos();
        Span(if nanos > u64::MAX as u128 {
            u64::MAX
        } else {
            nanos as u64
        })
    }
}

impl Add<Span> for Time {
    type Output = Time;
    /// Saturates instead of overflowing, so a huge configured timeout means "never".
    #[inline]
    fn add(self, rhs: Span) -> Time {
        Time(self.0.saturating_add(rhs.0))
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    fn sub(self, rhs: Time) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:.6}s", self.since_epoch().as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanoseconds_read_back_as_given() {
        for ns in [0, 1, 1_500_000_000, u64::MAX] {
            assert_eq!(Time::from_nanos(ns).as_nanos(), ns);
        }
    }

    /// A timeout longer than 584 years means "never": it saturates, and
    /// never wraps round to a short one.
    #[test]
    fn a_huge_duration_saturates_and_never_wraps() {
        let never = Time::from_nanos(u64::MAX);
        assert_eq!(Time::ZERO + Duration::MAX, never);
        assert_eq!(Time::from_millis(5) + Duration::from_secs(u64::MAX), never);
        let longest = Duration::from_nanos(u64::MAX);
        assert_eq!(Time::ZERO + longest, never);
        let just_over = longest + Duration::from_nanos(1);
        assert_eq!(Time::ZERO + just_over, never);
        assert_eq!(
            Time::from_nanos(7) + Duration::from_nanos(3),
            Time::from_nanos(10)
        );
    }
}
