//! What became of each request: one [`Finished`] per request core began, for
//! access logs and metrics. Core knows every ending — a response written, a
//! refusal, a fault of the application, a client gone, a cut at the deadline
//! — so drivers need not guess.

use crate::close::CloseReason;
use crate::reject::Reject;
use crate::request::{ConnId, RequestId};
use crate::time::Time;

/// How a request ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The application's response was completely handed to the driver.
    Complete,
    /// Core refused the request with an error response, completely handed to
    /// the driver.
    Rejected(Reject),
    /// The application failed it (an invalid response, or none at all); core's
    /// 500 was completely handed to the driver.
    AppFault,
    /// The connection ended before a response was completely handed over;
    /// the reason says why (the client left, the deadline cut it, a forced
    /// exit, a stalled write).
    Unfinished(CloseReason),
}

impl Outcome {
    /// A short word for logs: `complete`, `rejected`, `app-fault` (also a
    /// streamed body that broke its declared length), `cut` (by the
    /// deadline or a forced exit), `client-gone` or `stalled`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Rejected(_) => "rejected",
            // The application broke its own streamed body: its fault, not
            // the client's, though the response is cut short.
            Outcome::AppFault | Outcome::Unfinished(CloseReason::StreamMismatch) => "app-fault",
            Outcome::Unfinished(reason) if reason.is_forced() => "cut",
            Outcome::Unfinished(CloseReason::WriteStall) => "stalled",
            Outcome::Unfinished(_) => "client-gone",
        }
    }
}

/// The end of one request, emitted as [`Event::Finished`](crate::Event::Finished).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The connection it arrived on.
    pub conn: ConnId,
    /// Its id, if it was handed to the application.
    pub request: Option<RequestId>,
    /// The status of its response, if one was queued: for a request still
    /// arriving when the drain deadline (or a second stop) cut it, the 503
    /// core queued on the way out, which the driver writes once without
    /// waiting (its outcome is still a cut).
    pub status: Option<u16>,
    /// Bytes of response body queued (none for `HEAD`, 204 and 304).
    pub body_bytes: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// When its first byte arrived.
    pub began_at: Time,
    /// When its response was queued, if it was.
    pub responded_at: Option<Time>,
    /// When it ended.
    pub finished_at: Time,
    /// Whether the connection stays open for another request.
    pub keeps_connection: bool,
}

/// What a connection remembers of the request it is reading until it is
/// answered.
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct RequestLog {
    pub began_at: Time,
    /// How many bytes the connection had received before the request's
    /// first byte.
    pub began_offset: u64,
    pub dispatched: bool,
}

impl RequestLog {
    /// A request whose first byte arrived at `now`, after `began_offset`
    /// bytes of the connection.
    pub fn begun(now: Time, began_offset: u64) -> RequestLog {
        RequestLog {
            began_at: now,
            began_offset,
            dispatched: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_the_application_broke_is_its_fault_not_the_clients() {
        let broke = Outcome::Unfinished(CloseReason::StreamMismatch);
        assert_eq!(broke.label(), "app-fault");
        assert_eq!(Outcome::AppFault.label(), "app-fault");
        assert_eq!(
            Outcome::Unfinished(CloseReason::ClientClosed).label(),
            "client-gone"
        );
        assert_eq!(
            Outcome::Unfinished(CloseReason::WriteStall).label(),
            "stalled"
        );
        assert_eq!(Outcome::Unfinished(CloseReason::DeadlineCut).label(), "cut");
    }
}
