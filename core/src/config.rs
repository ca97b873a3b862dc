//! Every bound and timeout core enforces, each with a name, a default, and
//! (for bounds on what the peer sends) the status it produces.

use std::time::Duration;

use crate::time::Span;

/// Limits and timeouts for one [`Server`](crate::Server).
///
/// `Config::default()` gives the documented defaults; change fields as needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Largest request head (request line and headers), in bytes. Over it: 431.
    pub max_head_bytes: usize,
    /// Most header fields in one request head. Over it: 431.
    pub max_headers: usize,
    /// Longest request target, in bytes. Over it: 414.
    pub max_target_bytes: usize,
    /// Largest request body handed over whole, in bytes, however it is
    /// framed. Over it: 413.
    pub max_body_bytes: u64,
    /// Hand a request with a body to the application as soon as its head is
    /// complete, and its body in pieces as they arrive
    /// ([`Event::BodyReady`](crate::Event::BodyReady),
    /// [`Server::request_body`](crate::Server::request_body)), instead of
    /// whole. Reading pauses while `max_stream_buffer_bytes` of it wait for
    /// the application.
    pub stream_request_bodies: bool,
    /// Largest request body streamed to the application (with
    /// `stream_request_bodies`). Over it: 413. Unlimited by default.
    pub max_streamed_body_bytes: u64,
    /// Longest chunk-size line of a chunked body, extensions included. Over it: 400.
    pub max_chunk_line_bytes: usize,
    /// Largest trailer section of a chunked body (its field lines, CRLFs
    /// included). Over it: 431.
    pub max_trailer_bytes: usize,
    /// Pipelined input core buffers behind the request being answered before it
    /// asks the driver to stop reading (see [`Server::wants_read`](crate::Server::wants_read)).
    pub max_pipelined_bytes: usize,
    /// Most requests of one connection the application holds at once. While
    /// it works on one, complete requests pipelined behind it are handed
    /// over too, up to this many in all, and may be answered in any order;
    /// responses still leave in request order. 1 (or 0) hands the next
    /// request only once the one before is answered.
    pub max_pipelined_requests: usize,
    /// Most bytes discarded while lingering before the connection is closed anyway.
    pub max_linger_bytes: u64,
    /// Most bytes of a streamed body buffered per connection, each way: an
    /// application streaming a response faster than its client reads is
    /// given no more room until the driver has written some, and a request
    /// body streamed faster than the application reads it stops being read
    /// (back-pressure).
    pub max_stream_buffer_bytes: usize,

    /// From the first byte of a request to the end of its head (absolute, so
    /// slowloris cannot extend it). Expired: 408 and close.
    pub header_read_timeout: Duration,
    /// Longest wait for more body bytes. Expired: 408 and close.
    pub body_read_timeout: Duration,
    /// How long an idle keep-alive connection is kept while serving. Zero
    /// turns keep-alive off: every response closes its connection.
    pub keep_alive_timeout: Duration,
    /// How long a new connection may stay silent before its first request
    /// begins, while serving (during the drain, `first_byte_grace` applies).
    pub new_connection_timeout: Duration,
    /// The slowest a request body may arrive once `body_rate_grace` has
    /// passed since the request began, in bytes per second (0: no minimum). A
    /// body trickled slower is refused with 408, so a client cannot hold a
    /// connection by sending a byte now and then (in the spirit of Apache's
    /// `mod_reqtimeout` `MinRate`).
    pub min_body_rate_bytes_per_sec: u64,
    /// How long a request may take, from its first byte, before
    /// `min_body_rate_bytes_per_sec` applies to its body.
    pub body_rate_grace: Duration,
    /// Longest wait for the driver to report progress writing a response.
    /// Expired: the connection is closed and the response is lost.
    pub write_stall_timeout: Duration,
    /// How long a closing connection reads and discards input, waiting for the
    /// client's FIN, before it is closed regardless (absolute from the half-close).
    pub linger_timeout: Duration,

    /// After `terminate`, how long the server keeps accepting and serving while
    /// reporting that it is stopping (so a readiness probe can fail first).
    pub pre_stop: Duration,
    /// From the start of the drain to the forced exit.
    pub drain_timeout: Duration,
    /// During the drain, how long a newly accepted connection may stay silent.
    pub first_byte_grace: Duration,
    /// During the drain, how long a keep-alive connection must have been quiet
    /// before it is closed.
    pub idle_close_after: Duration,
}

/// A [`Config`] that no server should run with: a limit or timeout at zero
/// that would refuse or cut every request of some kind. Zero is the value
/// most often set by mistake, taken for "no limit"; where zero has a meaning
/// (`keep_alive_timeout`, `drain_timeout`, `min_body_rate_bytes_per_sec`,
/// `max_body_bytes`, ...) it is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The field, as `Config` names it.
    pub field: &'static str,
    /// What a server running with it would do.
    pub effect: &'static str,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is 0: {}", self.field, self.effect)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks that no limit or timeout is zero where zero would refuse or cut
    /// every request of some kind (see [`ConfigError`]). Core runs with any
    /// `Config`, safely; a driver calls this before it serves, so the mistake
    /// shows at start-up, not as a site answering only errors.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let zero = [
            (
                "max_head_bytes",
                self.max_head_bytes == 0,
                "every request would be refused with 431",
            ),
            (
                "max_headers",
                self.max_headers == 0,
                "every HTTP/1.1 request (it must send Host) would be refused with 431",
            ),
            (
                "max_target_bytes",
                self.max_target_bytes == 0,
                "every request would be refused with 414",
            ),
            (
                "max_chunk_line_bytes",
                self.max_chunk_line_bytes == 0,
                "every chunked request body would be refused with 400",
            ),
            (
                "max_stream_buffer_bytes",
                self.max_stream_buffer_bytes == 0,
                "no streamed body, response or request, could move a byte",
            ),
            (
                "header_read_timeout",
                self.header_read_timeout.is_zero(),
                "a request head split across packets would time out at once (408)",
            ),
            (
                "body_read_timeout",
                self.body_read_timeout.is_zero(),
                "a request body split across packets would time out at once (408)",
            ),
            (
                "new_connection_timeout",
                self.new_connection_timeout.is_zero(),
                "a connection would be closed before its first request could arrive",
            ),
            (
                "write_stall_timeout",
                self.write_stall_timeout.is_zero(),
                "a response the socket cannot take at once would be cut",
            ),
        ];
        match zero.into_iter().find(|&(_, is_zero, _)| is_zero) {
            Some((field, _, effect)) => Err(ConfigError { field, effect }),
            None => Ok(()),
        }
    }

    /// The largest request body this configuration accepts: whole, or
    /// streamed.
    pub(crate) fn body_limit(&self) -> u64 {
        if self.stream_request_bodies {
            self.max_streamed_body_bytes
        } else {
            self.max_body_bytes
        }
    }
}

/// The timeouts a connection's timer runs on, converted once from
/// [`Config`]'s `Duration`s when the server is made: every settle and every
/// self-check derives deadlines from them, and a `Duration` added to a
/// [`Time`](crate::Time) costs a 128-bit conversion each time.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Timeouts {
    pub header_read: Span,
    pub body_read: Span,
    pub keep_alive: Span,
    pub new_connection: Span,
    pub write_stall: Span,
    pub linger: Span,
    pub first_byte_grace: Span,
    pub idle_close_after: Span,
}

impl Timeouts {
    pub fn new(config: &Config) -> Timeouts {
        Timeouts {
            header_read: Span::from_duration(config.header_read_timeout),
            body_read: Span::from_duration(config.body_read_timeout),
            keep_alive: Span::from_duration(config.keep_alive_timeout),
            new_connection: Span::from_duration(config.new_connection_timeout),
            write_stall: Span::from_duration(config.write_stall_timeout),
            linger: Span::from_duration(config.linger_timeout),
            first_byte_grace: Span::from_duration(config.first_byte_grace),
            idle_close_after: Span::from_duration(config.idle_close_after),
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_target_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
            stream_request_bodies: false,
            max_streamed_body_bytes: u64::MAX,
            max_chunk_line_bytes: 1024,
            max_trailer_bytes: 8 * 1024,
            max_pipelined_bytes: 64 * 1024,
            max_pipelined_requests: 16,
            max_linger_bytes: 1024 * 1024,
            max_stream_buffer_bytes: 256 * 1024,
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            new_connection_timeout: Duration::from_secs(10),
            min_body_rate_bytes_per_sec: 500,
            body_rate_grace: Duration::from_secs(10),
            write_stall_timeout: Duration::from_secs(30),
            linger_timeout: Duration::from_secs(2),
            pre_stop: Duration::ZERO,
            drain_timeout: Duration::from_secs(30),
            first_byte_grace: Duration::from_secs(1),
            idle_close_after: Duration::from_millis(250),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn zero_where_it_means_something_is_valid() {
        let config = Config {
            keep_alive_timeout: Duration::ZERO,
            drain_timeout: Duration::ZERO,
            pre_stop: Duration::ZERO,
            min_body_rate_bytes_per_sec: 0,
            max_body_bytes: 0,
            max_pipelined_bytes: 0,
            linger_timeout: Duration::ZERO,
            first_byte_grace: Duration::ZERO,
            idle_close_after: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(config.validate(), Ok(()));
    }

    /// A field's name, and how to set it to zero.
    type Zeroing = (&'static str, fn(&mut Config));

    #[test]
    fn each_zero_that_refuses_everything_is_named() {
        let cases: [Zeroing; 9] = [
            ("max_head_bytes", |c| c.max_head_bytes = 0),
            ("max_headers", |c| c.max_headers = 0),
            ("max_target_bytes", |c| c.max_target_bytes = 0),
            ("max_chunk_line_bytes", |c| c.max_chunk_line_bytes = 0),
            ("max_stream_buffer_bytes", |c| c.max_stream_buffer_bytes = 0),
            ("header_read_timeout", |c| {
                c.header_read_timeout = Duration::ZERO
            }),
            ("body_read_timeout", |c| {
                c.body_read_timeout = Duration::ZERO
            }),
            ("new_connection_timeout", |c| {
                c.new_connection_timeout = Duration::ZERO
            }),
            ("write_stall_timeout", |c| {
                c.write_stall_timeout = Duration::ZERO
            }),
        ];
        for (field, set) in cases {
            let mut config = Config::default();
            set(&mut config);
            let error = config.validate().unwrap_err();
            assert_eq!(error.field, field);
            assert!(error.to_string().starts_with(&format!("{field} is 0: ")));
        }
    }
}
