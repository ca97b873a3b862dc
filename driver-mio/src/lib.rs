//! # ebb-mio
//!
//! ebb's driver for real sockets: it runs [`ebb_core::Server`] on mio, one
//! loop per worker thread, and maps readiness, signals and the clock onto
//! core's inputs and core's events onto syscalls. Every HTTP and shutdown
//! decision is core's; this crate only carries them out.
//!
//! It also holds the embedding API — [`Builder`], [`Handler`], [`Responder`],
//! [`ShutdownHandle`] — and the `ebb` binary's library parts ([`cli`],
//! [`demo`], [`logger`]).
//!
//! ```no_run
//! use ebb_mio::{Builder, Request, Responder, Response};
//!
//! let builder = Builder::new().bind("127.0.0.1:8080".parse().unwrap()).workers(2);
//! let shutdown = builder.shutdown_handle(); // from any thread: shutdown.shutdown()
//! # drop(shutdown);
//! let report = builder
//!     .serve(|req: &Request<'_>, res: Responder| {
//!         let body = format!("you asked for {}\n", req.path());
//!         res.respond(Response::text(200, body));
//!     })
//!     .unwrap();
//! println!("{report}");
//! ```

#![warn(missing_docs)]

mod builder;
pub mod cli;
pub mod demo;
mod handler;
mod listener;
pub mod logger;
mod serve;
mod shutdown;
mod signals;
mod worker;

pub use builder::{Builder, DEFAULT_BACKLOG};
pub use ebb_core::{Bytes, Config, DrainReport, Request, RequestId};
pub use handler::{Handler, Responder, Response};
pub use listener::systemd_listener;
pub use shutdown::ShutdownHandle;

/// The README's examples, compiled and run as doctests so it stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
