//! Fuzz target bodies, compiled by ordinary builds so they never rot.
//!
//! Each target is a function from bytes to nothing that panics when an oracle
//! is violated. `fuzz/` wraps each in a three-line cargo-fuzz target, and
//! `tests/tests/fuzz_corpus.rs` replays the checked-in corpus and every
//! minimised crash through the same functions on stable `cargo test`.
//!
//! - [`request_bytes`]: raw bytes into one connection, whole and split, with
//!   the application answering every request (switching protocols when
//!   asked, sometimes); both runs must agree, every core-made error must be
//!   a 4xx/5xx that closes, and S1, S2 and S4 of
//!   [`properties`](crate::properties) must hold.
//! - [`server_ops`]: a structured sequence of driver and application inputs
//!   across several connections — streamed responses, streamed request
//!   bodies and upgrades among them — checked against the safety properties
//!   as far as a driver can observe them.
//! - [`chunked`]: [`ChunkedDecoder`](ebb_core::ChunkedDecoder), whole and
//!   split, against a small reference decoder written for the test.
//!
//! Every choice an input does not spell out comes from the kit's
//! [`Rng`](crate::rng::Rng), seeded from the input with
//! [`Rng::from_input`](crate::rng::Rng::from_input), so one input always
//! gives the same run.

mod chunked;
mod request_bytes;
mod server_ops;
#[cfg(test)]
mod server_ops_seeds;
mod wire;

pub use chunked::chunked;
pub use request_bytes::{request_bytes, request_bytes_salted};
pub use server_ops::server_ops;
