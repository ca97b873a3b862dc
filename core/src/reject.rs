//! Requests core refuses, each with the status it answers with. All of them
//! are the peer's fault; every one ends the connection.

/// Why core refused a request on its own, without involving the application.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    /// The bytes are not HTTP/1.x or break a header rule (400).
    Malformed(Malformed),
    /// The request target is longer than `max_target_bytes` (414).
    TargetTooLong,
    /// The head is larger than `max_head_bytes` (431).
    HeadTooLarge,
    /// More than `max_headers` header fields (431).
    TooManyHeaders,
    /// The chunked trailer section is larger than `max_trailer_bytes` (431).
    TrailersTooLarge,
    /// The body is larger than `max_body_bytes` (413).
    BodyTooLarge,
    /// The head did not arrive within `header_read_timeout` of its first
    /// byte (408).
    HeadTimeout,
    /// The body made no progress for `body_read_timeout` (408).
    BodyTimeout,
    /// The body arrived slower than `min_body_rate_bytes_per_sec` once
    /// `body_rate_grace` had passed (408).
    BodyTooSlow,
    /// A well-formed request for something ebb does not implement (501).
    NotImplemented(Unsupported),
    /// A well-formed request line naming an HTTP major version other than 1
    /// (505). Later HTTP/1 minor versions (`HTTP/1.2`) are served as HTTP/1.1.
    VersionNotSupported,
}

impl Reject {
    /// The status code of the response.
    pub fn status(&self) -> u16 {
        match self {
            Reject::Malformed(_) => 400,
            Reject::HeadTimeout | Reject::BodyTimeout | Reject::BodyTooSlow => 408,
            Reject::BodyTooLarge => 413,
            Reject::TargetTooLong => 414,
            Reject::HeadTooLarge | Reject::TooManyHeaders | Reject::TrailersTooLarge => 431,
            Reject::NotImplemented(_) => 501,
            Reject::VersionNotSupported => 505,
        }
    }

    /// A short explanation, sent as the response body.
    pub fn detail(&self) -> &'static str {
        match self {
            Reject::Malformed(why) => why.explain(),
            Reject::NotImplemented(what) => what.explain(),
            Reject::TargetTooLong => "request target too long",
            Reject::HeadTooLarge => "request head too large",
            Reject::TooManyHeaders => "too many header fields",
            Reject::TrailersTooLarge => "chunked trailers too large",
            Reject::BodyTooLarge => "request body too large",
            Reject::HeadTimeout => "request head not received in time",
            Reject::BodyTimeout => "request body not received in time",
            Reject::BodyTooSlow => "request body arriving too slowly",
            Reject::VersionNotSupported => "only HTTP/1.x is supported",
        }
    }
}

/// Which rule a [`Reject::Malformed`] request broke. A byte, where the
/// explanation itself would be sixteen: a reject rides in a close reason and
/// in every request's [`Outcome`](crate::Outcome), so it sizes the events.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// httparse refused the head.
    Head,
    /// An asterisk-form target (`*`) with a method other than OPTIONS.
    AsteriskTarget,
    /// A target neither origin-form nor absolute-form.
    TargetForm,
    /// A target with a byte no URI holds: one from 0x80 (non-ASCII is
    /// percent-encoded) or `#` (a fragment is never sent).
    TargetBytes,
    /// A `%` in the target's path that does not start two hex digits.
    PathEscape,
    /// A Host whose value is not a host and port.
    Host,
    /// An HTTP/1.1 request without a Host.
    NoHost,
    /// More than one Host.
    ManyHosts,
    /// A Content-Length that is not a number.
    ContentLength,
    /// Content-Length values that disagree.
    ConflictingLengths,
    /// Both Transfer-Encoding and Content-Length.
    LengthAndCoding,
    /// Transfer-Encoding in an HTTP/1.0 request.
    CodingInHttp10,
    /// A request line that does not start with a method and a space.
    Method,
    /// A Transfer-Encoding that does not end in a single `chunked`.
    NotChunkedLast,
    /// `chunked` with parameters, which it has none of (RFC 9112 §7.1).
    ChunkedParameters,
    /// A chunked body that breaks the chunked syntax.
    ChunkedBody,
    /// A chunk-size line longer than core reads.
    ChunkLineTooLong,
}

impl Malformed {
    /// A short explanation, sent as the response body.
    pub fn explain(self) -> &'static str {
        match self {
            Malformed::Head => "malformed request head",
            Malformed::AsteriskTarget => "asterisk-form target is only allowed with OPTIONS",
            Malformed::TargetForm => "request target is not origin-form or absolute-form",
            Malformed::TargetBytes => "request target has a byte a URI cannot hold",
            Malformed::PathEscape => "a % in the path does not start two hex digits",
            Malformed::Host => "Host is not a valid host and port",
            Malformed::NoHost => "HTTP/1.1 request needs exactly one Host",
            Malformed::ManyHosts => "more than one Host",
            Malformed::ContentLength => "Content-Length is not a number",
            Malformed::ConflictingLengths => "conflicting Content-Length values",
            Malformed::LengthAndCoding => "both Transfer-Encoding and Content-Length",
            Malformed::CodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            Malformed::Method => "the request line does not start with a method",
            Malformed::NotChunkedLast => "Transfer-Encoding must end in a single chunked",
            Malformed::ChunkedParameters => "the chunked coding takes no parameters",
            Malformed::ChunkedBody => "malformed chunked body",
            Malformed::ChunkLineTooLong => "chunk-size line too long",
        }
    }
}

/// What a [`Reject::NotImplemented`] request asked for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Unsupported {
    /// The CONNECT method (an authority-form target).
    Connect,
    /// A transfer coding other than `chunked`.
    TransferCoding,
    /// A method longer than any a server implements (RFC 9112 §3), found
    /// when it made the request line longer than core reads.
    LongMethod,
}

impl Unsupported {
    /// A short explanation, sent as the response body.
    pub fn explain(self) -> &'static str {
        match self {
            Unsupported::Connect => "CONNECT is not supported",
            Unsupported::TransferCoding => "unsupported transfer coding",
            Unsupported::LongMethod => "method too long",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refusal explains itself in its body, each in its own words, so
    /// that a client (or whoever reads its log) can tell them apart.
    #[test]
    fn each_refusal_says_why_in_words_of_its_own() {
        use Malformed as M;
        let malformed = [
            M::Head,
            M::AsteriskTarget,
            M::TargetForm,
            M::TargetBytes,
            M::PathEscape,
            M::Host,
            M::NoHost,
            M::ManyHosts,
            M::ContentLength,
            M::ConflictingLengths,
            M::LengthAndCoding,
            M::CodingInHttp10,
            M::Method,
            M::NotChunkedLast,
            M::ChunkedParameters,
            M::ChunkedBody,
            M::ChunkLineTooLong,
        ]
        .map(Reject::Malformed);
        let unsupported = [
            Unsupported::Connect,
            Unsupported::TransferCoding,
            Unsupported::LongMethod,
        ]
        .map(Reject::NotImplemented);
        let others = [
            Reject::TargetTooLong,
            Reject::HeadTooLarge,
            Reject::TooManyHeaders,
            Reject::TrailersTooLarge,
            Reject::BodyTooLarge,
            Reject::HeadTimeout,
            Reject::BodyTimeout,
            Reject::BodyTooSlow,
            Reject::VersionNotSupported,
        ];
        let all: Vec<Reject> = [&malformed[..], &unsupported, &others].concat();
        let mut details: Vec<&str> = all.iter().map(Reject::detail).collect();
        assert!(details.iter().all(|d| d.len() > 5), "{details:?}");
        details.sort_unstable();
        details.dedup();
        assert_eq!(details.len(), all.len(), "a detail said twice");
    }
}
