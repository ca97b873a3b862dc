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
//! In scope: HTTP/1.0 and HTTP/1.1 requests with whole bodies (up to
//! `max_body_bytes`), responses with a known length. Out of scope: TLS,
//! HTTP/2, protocol upgrades (an `Upgrade` request is answered as plain
//! HTTP/1.1), `CONNECT`, streaming bodies, and chunked responses.

mod chunked;
mod close;
mod config;
mod conn;
mod drain;
mod lifecycle;
mod parse;
mod read;
mod reject;
mod report;
mod request;
mod response;
mod server;
mod time;
mod timers;
mod transitions;
mod write;

pub use bytes::Bytes;
pub use chunked::{ChunkedDecoder, ChunkedError, ChunkedLimits};
pub use close::CloseReason;
pub use config::Config;
pub use lifecycle::Phase;
pub use reject::Reject;
pub use report::{DrainReport, Forced};
pub use request::{ConnId, OwnedRequest, Request, RequestId, Version};
pub use response::RespondError;
pub use server::{Event, Server};
pub use time::Time;
