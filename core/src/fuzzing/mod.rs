//! Fuzz target bodies, compiled by ordinary builds with the `fuzzing` feature
//! so they never rot.
//!
//! Each target is a function from bytes to nothing that panics when an oracle
//! is violated. `fuzz/` wraps each in a three-line cargo-fuzz target, and
//! `tests/tests/fuzz_corpus.rs` replays the checked-in corpus and every
//! minimised crash through the same functions on stable `cargo test`.
//!
//! - [`request_bytes`]: raw bytes into one connection, whole and split, with
//!   the application answering every request; both runs must agree, every
//!   core-made error must be a 4xx/5xx that closes, and the count must equal
//!   the recount after every input.
//! - [`server_ops`]: a structured sequence of driver inputs across several
//!   connections, checked against the safety properties of `DESIGN.md` as far
//!   as a driver can observe them.
//! - [`chunked`]: [`ChunkedDecoder`](crate::ChunkedDecoder), whole and split,
//!   against a small reference decoder written for the test.
//!
//! Nothing here is part of ebb's API: it exists for the fuzzers and tests.

mod chunked;
mod request_bytes;
mod server_ops;
mod wire;

pub use chunked::chunked;
pub use request_bytes::request_bytes;
pub use server_ops::server_ops;

/// A small deterministic generator (SplitMix64) for choices derived from the
/// input, so one input always gives the same run.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    /// A generator seeded with a hash (FNV-1a) of `data` and a `salt`.
    fn from_input(data: &[u8], salt: u64) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability 1/`n`.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Panics if core's invariants are broken or its active count differs from a
/// recount: the check both stateful targets make after every input.
fn assert_invariants(server: &crate::Server) {
    if let Err(e) = server.check_invariants() {
        panic!("invariant broken: {e}");
    }
    assert_eq!(
        server.active_requests(),
        server.recount_active_requests(),
        "active count differs from recount"
    );
}
