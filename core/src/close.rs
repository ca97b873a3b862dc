//! Why a connection ends. Every [`Event::HalfClose`](crate::Event::HalfClose)
//! and [`Event::Close`](crate::Event::Close) carries one, so a driver can log
//! it, the drain report is counted from it, and the simulator checks it
//! against its own ledger instead of guessing.

use std::fmt;

use crate::reject::Reject;

/// The reason core ended (or began ending) a connection.
///
/// A connection that half-closes and lingers carries the same reason on its
/// final `Close` when the client's FIN ends the linger; a linger that gives up
/// ends with [`LingerTimeout`](Self::LingerTimeout) or
/// [`LingerOverflow`](Self::LingerOverflow) instead.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client asked to close (`Connection: close`, or HTTP/1.0 without
    /// keep-alive), and its response was written.
    ClientAsked,
    /// The client sent FIN: nothing is left to answer, or its unfinished
    /// request never will be finished.
    ClientClosed,
    /// The client reset the connection, or a read or write failed.
    Aborted,
    /// Core refused a request with an error response (4xx/5xx, `Connection:
    /// close`); the [`Reject`] says which.
    Rejected(Reject),
    /// An idle keep-alive connection reached `keep_alive_timeout` while serving.
    KeepAliveTimeout,
    /// `keep_alive_timeout` is zero: the response closed its connection.
    KeepAliveOff,
    /// A new connection sent nothing within `new_connection_timeout`.
    NewConnectionTimeout,
    /// The server had too many connections open (the driver reported
    /// descriptor pressure), so the longest-idle keep-alive ones made room.
    FdPressure,
    /// An idle keep-alive connection stayed quiet for `idle_close_after`
    /// during the drain.
    IdleInDrain,
    /// A connection accepted (or never used) before the drain sent nothing
    /// within `first_byte_grace`.
    FirstByteGrace,
    /// The server is stopping (PreStop or the drain), so the response
    /// carried `Connection: close` and ended the connection.
    Stopping,
    /// The driver reported no write progress for `write_stall_timeout`; the
    /// response is lost.
    WriteStall,
    /// After a half-close, the client sent no FIN within `linger_timeout`.
    LingerTimeout,
    /// After a half-close, the client sent more than `max_linger_bytes`.
    LingerOverflow,
    /// The drain deadline passed with the connection still open.
    DeadlineCut,
    /// A second terminate forced the exit with the connection still open.
    ForcedExit,
    /// The server had already exited when the connection was accepted.
    AfterExit,
    /// The application's streamed body did not match the length it declared
    /// (too many bytes, or it ended short): the response is broken, so the
    /// connection ends rather than corrupt the next response.
    StreamMismatch,
    /// A streamed body of unknown length to an HTTP/1.0 client: its end is
    /// the connection's end.
    CloseDelimited,
    /// The application closed a connection that had left HTTP (an upgrade).
    UpgradedClosed,
    /// The response came before the streamed request body was read to its
    /// end: the rest is discarded with the connection.
    BodyUnread,
}

impl CloseReason {
    /// One line that says what happened, for a log.
    pub fn explain(self) -> &'static str {
        match self {
            CloseReason::ClientAsked => "the client asked to close after its response",
            CloseReason::ClientClosed => "the client closed its side",
            CloseReason::Aborted => "the connection was reset or failed",
            CloseReason::Rejected(_) => "core refused the request with an error response",
            CloseReason::KeepAliveTimeout => "idle keep-alive connection timed out",
            CloseReason::KeepAliveOff => "keep-alive is off: one request per connection",
            CloseReason::NewConnectionTimeout => "a new connection sent no request in time",
            CloseReason::FdPressure => "idle connection closed to free a descriptor",
            CloseReason::IdleInDrain => "idle keep-alive connection closed by the drain",
            CloseReason::FirstByteGrace => "no request arrived within the drain's first-byte grace",
            CloseReason::Stopping => "the server is stopping: the response closed the connection",
            CloseReason::WriteStall => "the response stopped making progress and was abandoned",
            CloseReason::LingerTimeout => "the client sent no FIN within the linger timeout",
            CloseReason::LingerOverflow => "the client sent too much after the half-close",
            CloseReason::DeadlineCut => "the drain deadline cut the connection",
            CloseReason::ForcedExit => "a second terminate forced the exit",
            CloseReason::AfterExit => "the server had already exited",
            CloseReason::StreamMismatch => "the streamed body did not match its declared length",
            CloseReason::CloseDelimited => "the body's end is the connection's end (HTTP/1.0)",
            CloseReason::UpgradedClosed => "the application closed the upgraded connection",
            CloseReason::BodyUnread => "the response came before the request body was read",
        }
    }

    /// Whether the close ends the server's life early: whatever was still
    /// active on the connection was cut.
    pub fn is_forced(self) -> bool {
        matches!(
            self,
            CloseReason::DeadlineCut | CloseReason::ForcedExit | CloseReason::AfterExit
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Rejected(reject) => {
                write!(f, "rejected with {}: {}", reject.status(), reject.detail())
            }
            other => f.write_str(other.explain()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::Reject;

    /// Each reason a log line gives is its own, and a refusal names its
    /// status and why.
    #[test]
    fn each_close_is_told_in_words_of_its_own() {
        use CloseReason as C;
        let reasons = [
            C::ClientAsked,
            C::ClientClosed,
            C::Aborted,
            C::Rejected(Reject::HeadTimeout),
            C::KeepAliveTimeout,
            C::KeepAliveOff,
            C::NewConnectionTimeout,
            C::FdPressure,
            C::IdleInDrain,
            C::FirstByteGrace,
            C::Stopping,
            C::WriteStall,
            C::LingerTimeout,
            C::LingerOverflow,
            C::DeadlineCut,
            C::ForcedExit,
            C::AfterExit,
            C::StreamMismatch,
            C::CloseDelimited,
            C::UpgradedClosed,
            C::BodyUnread,
        ];
        let mut told: Vec<String> = reasons.iter().map(ToString::to_string).collect();
        assert!(told.iter().all(|t| t.len() > 5), "{told:?}");
        assert_eq!(
            told[3],
            "rejected with 408: request head not received in time"
        );
        told.sort_unstable();
        told.dedup();
        assert_eq!(told.len(), reasons.len(), "a reason told twice");
        let mut explained: Vec<&str> = reasons.iter().map(|r| r.explain()).collect();
        explained.sort_unstable();
        explained.dedup();
        assert_eq!(explained.len(), reasons.len(), "a reason explained twice");
    }
}
