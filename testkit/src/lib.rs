//! # ebb-testkit
//!
//! Test support for ebb, kept once and shared by core's tests, the fuzzers,
//! the end-to-end tests and the simulator:
//!
//! - [`properties`]: the safety properties S1…S9, numbered for the checks to
//!   cite, and the invariant check every checker makes after every input;
//! - [`response`]: the one HTTP/1.1 response parser — incremental, strict,
//!   with every framing a server may use;
//! - [`rng`]: the one seeded generator, seeded by a number or by an input's
//!   bytes;
//! - [`harness`]: the in-memory driver loop — every event carried out at
//!   once, a virtual clock that jumps to the next deadline;
//! - [`fuzz`]: the bodies of the cargo-fuzz targets in `fuzz/`, which
//!   ordinary builds compile and `cargo test` replays over the corpus.
//!
//! It uses only core's public API, as any driver does.

#![warn(missing_docs)]

pub mod fuzz;
pub mod harness;
pub mod properties;
pub mod response;
pub mod rng;
