//! A connection's received bytes not yet consumed.
//!
//! The current request starts the input. Answered requests are let go by
//! moving a start offset, not the bytes behind them, so a batch of pipelined
//! requests costs no move per request; what is left is moved down once, when
//! more bytes arrive, and nothing is moved when a batch is consumed whole.

use std::ops::{Deref, Range};

#[derive(Debug, Default)]
pub(crate) struct Input {
    bytes: Vec<u8>,
    /// Where the unconsumed bytes begin in `bytes`.
    start: usize,
}

impl Deref for Input {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

impl Input {
    /// Appends bytes that arrived.
    pub fn extend(&mut self, more: &[u8]) {
        if self.start > 0 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(more);
    }

    /// Lets go of the first `n` bytes.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len(), "consumed more than was received");
        self.start += n;
        if self.start == self.bytes.len() {
            self.clear();
        }
    }

    /// Removes the bytes in `range` (relative to the start), keeping those
    /// before and after it: decoded chunked framing inside a request.
    pub fn remove(&mut self, range: Range<usize>) {
        self.bytes
            .drain(self.start + range.start..self.start + range.end);
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.start = 0;
    }

    /// Takes the unconsumed bytes, leaving the input empty.
    pub fn take(&mut self) -> Vec<u8> {
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.drain(..self.start);
        self.start = 0;
        bytes
    }

    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Gives back the memory, for a pool that keeps only small buffers.
    pub fn shrink_away(&mut self) {
        *self = Input::default();
    }
}
