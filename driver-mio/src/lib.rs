//! # ebb-mio
//!
//! ebb's driver for real sockets: it runs [`ebb_core::Server`] on mio, one
//! loop per worker thread, and maps readiness, signals and the clock onto
//! core's inputs and core's events onto syscalls. Every HTTP and shutdown
//! decision is core's; this crate only carries them out.
//!
//! It also holds the embedding API — [`Builder`], [`Handler`], [`Responder`],
//! [`Response`], [`BodyWriter`] and [`BodyReader`] for streamed bodies,
//! [`Upgraded`] for connections that switch protocols, [`ShutdownHandle`],
//! and for watching the server an access log ([`Builder::access_log`]) and an
//! observer ([`Builder::observe`], [`Observation`]) — and re-exports the types
//! of `ebb-core` that API shows, so an embedder depends on this crate alone.
//!
//! ```no_run
//! use ebb_mio::{Builder, Response};
//!
//! let builder = Builder::new().bind("127.0.0.1:8080".parse().unwrap()).workers(2);
//! let shutdown = builder.shutdown_handle(); // from any thread: shutdown.shutdown()
//! # drop(shutdown);
//! let report = builder
//!     .serve(|req, res| {
//!         let body = format!("you asked for {}\n", req.path());
//!         res.respond(Response::text(200, body));
//!     })
//!     .unwrap();
//! println!("{report}");
//! ```

#![warn(missing_docs)]

// The `ebb` binary's command line, demo app and logger (`cli.rs`, `demo.rs`,
// `logger.rs`) sit beside these files but are modules of the binary
// (`bin/ebb.rs`), not of this library: they are not API an embedder should
// build on.
mod access_log;
mod balance;
mod builder;
mod exit_deadline;
mod handler;
mod inflight;
mod listener;
mod nodelay;
mod notify;
mod observer;
mod pidfile;
mod serve;
mod shutdown;
mod signals;
mod stream;
mod stuck;
mod sys;
mod upgrade;
mod upgraded;
mod upload;
mod worker;

pub use access_log::ACCESS_LOG_TARGET;
pub use builder::{Builder, DEFAULT_BACKLOG};
// What the API above shows: request parts, the report `serve` returns (its
// times and why it was forced), the config, and what an observer hears.
pub use ebb_core::{
    BodyLength, Bytes, CloseReason, Config, ConfigError, ConnId, DrainReport, Forced, Outcome,
    OwnedRequest, Phase, Reject, Request, RequestId, Time, Version,
};
pub use handler::{Handler, Responder, Response};
pub use listener::systemd_listener;
pub use observer::{Observation, RequestEnd};
pub use shutdown::ShutdownHandle;
pub use signals::hold_back_signals;
pub use stream::BodyWriter;
pub use upgraded::{PendingUpgrade, Upgraded};
pub use upload::BodyReader;

/// The README's examples, compiled and run as doctests so it stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
