//! # ebb-core
//!
//! The sans-IO heart of ebb: an HTTP/1.1 server as a deterministic state
//! machine. It owns every protocol and lifecycle decision — parsing (with
//! httparse), body framing (`Content-Length` and chunked), keep-alive and
//! pipelining, limits and timeouts, error responses, response serialisation,
//! the active-request count, and the graceful drain — and does no I/O: no
//! sockets, no threads, no clock reads. Drivers (the mio driver, the
//! simulator, the fuzzers) feed it the same inputs, so what the simulator
//! proves is what production runs.
//!
//! Start at [`Server`]: its documentation is the contract for a driver.
//! [`ChunkedDecoder`] is public on its own too: a strict, streaming decoder
//! of the chunked coding that clients of ebb (the test kit among them) can
//! use, and that the fuzzers check against a reference.
//!
//! ## The driver loop
//!
//! Every driver has this shape: make an input, then carry out events until
//! [`Server::poll_event`] says `None`, then sleep until I/O or
//! [`Server::poll_timeout`]. Here one client's request is answered while the
//! server drains, with the socket played by a `Vec`:
//!
//! ```
//! use ebb_core::{Bytes, CloseReason, Config, Event, Server, Time};
//!
//! let mut server = Server::new(Config::default());
//! let mut now = Time::ZERO;
//! let conn = server.handle_accept(now);
//! server.handle_recv(conn, b"GET /hi HTTP/1.1\r\nHost: example.com\r\n\r\n", now);
//! server.handle_terminate(now); // stop once what was begun is answered
//! let mut wire = Vec::new();
//! let report = loop {
//!     match server.poll_event() {
//!         Some(Event::Request(id)) => {
//!             let body = Bytes::from(server.request(id).unwrap().path().to_owned());
//!             server.handle_response(id, 200, [("Content-Type", "text/plain")], body, now).unwrap();
//!         }
//!         Some(Event::Transmit(c)) => {
//!             let [head, tail] = server.transmit(c); // one vectored write
//!             let n = head.len() + tail.len();
//!             wire.extend_from_slice(head);
//!             wire.extend_from_slice(tail);
//!             server.handle_sent(c, n, now);
//!         }
//!         // Accept until accepting would block; here nothing is queued.
//!         Some(Event::DrainBacklog) => server.handle_backlog_empty(now),
//!         // What the socket holds unread (FIONREAD); here the Vec is read.
//!         Some(Event::CountUnread(c)) => server.handle_unread(c, 0, now),
//!         // shutdown(Write); this client reads its answer and closes too.
//!         Some(Event::HalfClose(c, _)) => server.handle_peer_eof(c, now),
//!         Some(Event::Close(_, reason)) => assert_eq!(reason, CloseReason::Stopping),
//!         Some(Event::Exit) => break server.exit_report().cloned().expect("exited"),
//!         // Nothing this example needs: reads resume, no stream, no upgrade.
//!         Some(
//!             Event::Farewell(..)
//!             | Event::ResumeRead(_)
//!             | Event::CloseListener
//!             | Event::BodyReady(_)
//!             | Event::StreamWritable(_)
//!             | Event::Upgraded(_)
//!             | Event::StopUpgraded(_),
//!         ) => {}
//!         Some(Event::Finished(_)) => {} // one per request: an access log's line
//!         // Nothing to do: wait for I/O, or until the next deadline.
//!         None => {
//!             now = server.poll_timeout().expect("a drain always has a deadline");
//!             server.handle_timeout(now);
//!         }
//!     }
//! };
//! assert!(wire.starts_with(b"HTTP/1.1 200 OK\r\n"));
//! assert!(wire.ends_with(b"/hi"));
//! assert_eq!((report.requests_completed, report.forced), (1, None));
//! ```
//!
//! In scope: HTTP/1.x requests with whole bodies (up to `max_body_bytes`),
//! pipelining, responses whole or streamed (chunked, with back-pressure),
//! protocol upgrades (`101`, after which the byte stream is the
//! application's), request bodies whole or streamed. Out of scope: TLS,
//! HTTP/2, `CONNECT`.

#![warn(missing_docs)]

mod ahead;
mod byteset;
mod chunked;
mod close;
mod config;
mod conn;
mod drain;
mod finished;
mod input;
mod lifecycle;
mod parse;
mod read;
mod reject;
mod report;
mod request;
mod response;
mod selfcheck;
mod server;
mod stream;
mod time;
mod timers;
mod transitions;
mod write;

pub use bytes::Bytes;
pub use chunked::{ChunkedDecoder, ChunkedError, ChunkedLimits};
pub use close::CloseReason;
pub use config::{Config, ConfigError};
pub use finished::{Finished, Outcome};
pub use lifecycle::Phase;
pub use reject::{Malformed, Reject, Unsupported};
pub use report::{DrainReport, Forced};
pub use request::{ConnId, OwnedRequest, Request, RequestId, Version};
pub use response::RespondError;
pub use server::{Event, Server};
pub use stream::{BodyLength, RequestBody, StreamError};
pub use time::Time;
