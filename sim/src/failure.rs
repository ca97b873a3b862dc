//! What went wrong, by kind: the runner's exit status says which kind.

use std::fmt;

/// The first property a seed violated.
///
/// Each kind has its own exit status (see [`Failure::exit_code`]); messages
/// cite the property by its number (`S1`…`S9`, listed in the crate docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A safety property broke after some step, or core's self-check failed
    /// (or core panicked).
    Safety(String),
    /// Something that must happen did not happen by the liveness bound: core
    /// never exited, a handed request was never answered, a client never
    /// finished, or the world stopped making progress.
    Liveness(String),
    /// The drain report disagrees with what the world saw.
    Report(String),
    /// The same seed gave two different runs.
    Determinism(String),
}

impl Failure {
    /// The exit status for this kind: 1 safety, 3 liveness, 4 report,
    /// 5 determinism (0 is a pass, 2 a usage error).
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Safety(_) => 1,
            Failure::Liveness(_) => 3,
            Failure::Report(_) => 4,
            Failure::Determinism(_) => 5,
        }
    }

    /// The kind, as a word.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Safety(_) => "safety",
            Failure::Liveness(_) => "liveness",
            Failure::Report(_) => "report",
            Failure::Determinism(_) => "determinism",
        }
    }

    /// What happened.
    pub fn what(&self) -> &str {
        match self {
            Failure::Safety(s)
            | Failure::Liveness(s)
            | Failure::Report(s)
            | Failure::Determinism(s) => s,
        }
    }

    /// The same failure with its message prefixed by `where_`.
    pub fn located(self, where_: &str) -> Failure {
        let at = |s: String| format!("{where_}: {s}");
        match self {
            Failure::Safety(s) => Failure::Safety(at(s)),
            Failure::Liveness(s) => Failure::Liveness(at(s)),
            Failure::Report(s) => Failure::Report(at(s)),
            Failure::Determinism(s) => Failure::Determinism(at(s)),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.what())
    }
}
