//! The one-line-per-event trace, and its hash (same seed, same hash).

use std::fmt::{self, Write as _};
use std::io::Write as _;

use ebb_core::Time;

/// What to do with a run's trace lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceMode {
    /// Nothing: lines are not even formatted (sweeps).
    Off,
    /// Hash every line (FNV-1a), for determinism checks.
    Hash,
    /// Print every line to stdout, and hash it.
    Print,
}

/// Where trace lines go.
#[derive(Debug)]
pub struct Trace {
    print: bool,
    hash: Option<u64>,
    line: String,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

impl Trace {
    /// A trace that does what `mode` says.
    pub fn new(mode: TraceMode) -> Trace {
        Trace {
            print: mode == TraceMode::Print,
            hash: (mode != TraceMode::Off).then_some(FNV_OFFSET),
            line: String::new(),
        }
    }

    /// Whether lines are wanted at all (formatting is skipped otherwise).
    pub fn on(&self) -> bool {
        self.hash.is_some()
    }

    /// Records one line: the virtual time in microseconds, then `what`.
    pub fn line(&mut self, now: Time, what: fmt::Arguments<'_>) {
        self.line.clear();
        let ns = now.since_epoch().as_nanos();
        let _ = write!(self.line, "{:>7}.{:03} {what}", ns / 1000, ns % 1000);
        if let Some(h) = &mut self.hash {
            for b in self.line.bytes().chain([b'\n']) {
                *h = (*h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
            }
        }
        if self.print {
            // A closed pipe (`| head`) is not the run's failure.
            let _ = writeln!(std::io::stdout().lock(), "{}", self.line);
        }
    }

    /// The FNV-1a hash of every line so far, if hashing.
    pub fn hash(&self) -> Option<u64> {
        self.hash
    }
}

/// Records a trace line if tracing is on: `trace!(env, "fmt", args...)`,
/// where `env` has `trace` and `now` fields (an [`Env`](crate::env::Env)).
#[macro_export]
macro_rules! trace {
    ($w:expr, $($arg:tt)*) => {
        if $w.trace.on() {
            let now = $w.now;
            $w.trace.line(now, format_args!($($arg)*));
        }
    };
}
