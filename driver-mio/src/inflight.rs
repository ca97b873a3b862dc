//! What a worker remembers of a connection's requests between their dispatch
//! and their [`Finished`](ebb_core::Finished), for the access log and the
//! observer: core reports how a request ended, but not its method and
//! target, which the application saw at dispatch.
//!
//! Core may dispatch the next pipelined request before the previous
//! response's last byte is written, so a connection holds a short queue of
//! names, matched to `Finished` events by sequence number (they come in
//! order). The names live back to back in one `String` kept with the
//! connection's other state and reused: remembering a request allocates
//! nothing once the buffer has grown to fit. When the queue empties, the
//! buffer is cleared, which (unlike a truncation) reads nothing of it: on a
//! busy worker it is rarely in the cache when the next request comes.

use std::collections::VecDeque;
use std::fmt::Write;
use std::net::SocketAddr;

/// The requests of one connection dispatched and not yet finished, oldest
/// first, and its peer's address as text.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// The peer's address, as text.
    peer: String,
    /// Each name's method and target, back to back.
    text: String,
    names: VecDeque<Name>,
    /// Bytes at the start of `text` of the name [`finish`](Self::finish)
    /// last returned, removed by the next call that changes the queue.
    taken: usize,
}

#[derive(Copy, Clone, Debug)]
struct Name {
    seq: u32,
    method_len: usize,
    len: usize,
    body_bytes: Option<u64>,
}

/// A request as remembered: its method, its target, and its body's size if
/// it came whole.
pub(crate) type Named<'a> = (&'a str, &'a str, Option<u64>);

/// A buffer that has grown past this is not kept for another connection.
const KEEP_BYTES: usize = 16 * 1024;

impl InFlight {
    /// Empties it for a new connection from `peer`.
    pub(crate) fn reset(&mut self, peer: SocketAddr) {
        self.peer.clear();
        self.text.clear();
        self.names.clear();
        self.taken = 0;
        // Writing to a String cannot fail.
        let _ = write!(self.peer, "{peer}");
    }

    /// Whether it is worth keeping for another connection: it holds a grown
    /// buffer of reasonable size.
    pub(crate) fn worth_keeping(&self) -> bool {
        self.peer.capacity() > 0 && self.text.capacity() <= KEEP_BYTES
    }

    /// The peer's address, as text.
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// Remembers request `seq`, just dispatched, with its body's size if it
    /// came whole.
    pub(crate) fn push(&mut self, seq: u32, method: &str, target: &str, body_bytes: Option<u64>) {
        self.discard_taken();
        self.text.push_str(method);
        self.text.push_str(target);
        self.names.push_back(Name {
            seq,
            method_len: method.len(),
            len: method.len() + target.len(),
            body_bytes,
        });
    }

    /// Forgets request `seq` and the older ones still queued (which would
    /// have finished first). Returns the peer's address, and the request's
    /// method, target and request body size if it was remembered.
    pub(crate) fn finish(&mut self, seq: u32) -> (&str, Option<Named<'_>>) {
        self.discard_taken();
        while self.names.front().is_some_and(|name| name.seq < seq) {
            let stale = self.names.pop_front().expect("checked above");
            self.taken = stale.len;
            self.discard_taken();
        }
        if self.names.front().map_or(true, |name| name.seq != seq) {
            return (self.peer(), None);
        }
        let name = self.names.pop_front().expect("checked above");
        self.taken = name.len;
        let (method, rest) = self.text.split_at(name.method_len);
        let name = (method, &rest[..name.len - name.method_len], name.body_bytes);
        (&self.peer, Some(name))
    }

    /// Removes the text of the name last taken.
    fn discard_taken(&mut self) {
        if self.taken == 0 {
            return;
        }
        if self.names.is_empty() {
            self.text.clear();
        } else {
            self.text.drain(..self.taken);
        }
        self.taken = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:5555".parse().unwrap()
    }

    #[test]
    fn pipelined_names_finish_in_order() {
        let mut inflight = InFlight::default();
        inflight.reset(peer());
        inflight.push(0, "GET", "/a", Some(0));
        inflight.push(1, "POST", "/echo", Some(5));
        assert_eq!(
            inflight.finish(0),
            ("127.0.0.1:5555", Some(("GET", "/a", Some(0))))
        );
        inflight.push(2, "GET", "/c?x=1", Some(0));
        assert_eq!(inflight.finish(1).1, Some(("POST", "/echo", Some(5))));
        assert_eq!(inflight.finish(2).1, Some(("GET", "/c?x=1", Some(0))));
        assert_eq!(inflight.finish(3), ("127.0.0.1:5555", None));
    }

    #[test]
    fn a_finish_skips_older_names_and_an_unknown_one_is_none() {
        let mut inflight = InFlight::default();
        inflight.reset(peer());
        inflight.push(4, "GET", "/old", Some(0));
        inflight.push(5, "GET", "/new", Some(0));
        assert_eq!(inflight.finish(5).1, Some(("GET", "/new", Some(0))));
        inflight.push(7, "HEAD", "/", Some(0));
        assert_eq!(inflight.finish(6).1, None, "never dispatched: no name");
        assert_eq!(inflight.finish(7).1, Some(("HEAD", "/", Some(0))));
    }

    #[test]
    fn steady_keep_alive_reuses_the_buffer() {
        let mut inflight = InFlight::default();
        inflight.reset(peer());
        inflight.push(0, "GET", "/first", Some(0));
        let _ = inflight.finish(0);
        let capacity = inflight.text.capacity();
        for seq in 1..100 {
            inflight.push(seq, "GET", "/", Some(0));
            assert_eq!(inflight.finish(seq).1, Some(("GET", "/", Some(0))));
        }
        assert_eq!(inflight.text.capacity(), capacity);
        inflight.reset("[::1]:80".parse().unwrap());
        assert_eq!(inflight.finish(0), ("[::1]:80", None));
    }
}
