//! An in-memory driver for core: it carries out every event at once, writes
//! whatever core transmits (unless told not to), keeps a virtual clock that
//! jumps to the next deadline, and checks [S1](crate::properties) after every
//! event.
//!
//! ```
//! use ebb_testkit::harness::{get, Harness};
//!
//! let mut h = Harness::new();
//! let c = h.accept();
//! h.send(c, &get("/"));
//! h.respond(c, 200, b"hi");
//! let responses = h.responses(c);
//! assert_eq!((responses[0].status, &responses[0].body[..]), (200, &b"hi"[..]));
//! h.advance_ms(60_000); // the keep-alive timeout: a clean close
//! assert!(h.half_closed(c) && !h.closed(c));
//! h.eof(c); // the client's FIN ends the linger
//! assert!(h.closed(c));
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use ebb_core::{Bytes, CloseReason, Config, ConnId, DrainReport, Event, RequestId, Server, Time};

use crate::properties::assert_invariants;
use crate::response::{Response, ResponseParser};

/// One server, its virtual clock, and everything its driver saw.
pub struct Harness {
    /// The server under test; call its inputs directly, then [`pump`](Self::pump).
    pub server: Server,
    /// The virtual clock, passed to every input.
    pub now: Time,
    /// Every event polled, in order.
    pub log: Vec<Event>,
    /// Bytes written on each connection.
    pub written: BTreeMap<ConnId, Vec<u8>>,
    /// Requests handed to the application and not yet answered.
    pub pending: Vec<RequestId>,
    /// Whether Transmit events are written at once.
    pub auto_write: bool,
    /// Core said `CloseListener`.
    pub listener_closed: bool,
    /// The report of `Exit`, once it came (at most once).
    pub exit: Option<DrainReport>,
    /// Bytes each connection's socket holds unread, told to core when it
    /// asks ([`Event::CountUnread`]); none where a connection is absent.
    pub unread: BTreeMap<ConnId, usize>,
    /// By connection, for each request handed over: whether it was `HEAD`.
    heads: BTreeMap<ConnId, Vec<bool>>,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// A server with the default config, at time zero.
    pub fn new() -> Harness {
        Harness::with(Config::default())
    }

    /// A server with `config`, at time zero.
    pub fn with(config: Config) -> Harness {
        Harness {
            server: Server::new(config),
            now: Time::ZERO,
            log: Vec::new(),
            written: BTreeMap::new(),
            pending: Vec::new(),
            auto_write: true,
            listener_closed: false,
            exit: None,
            unread: BTreeMap::new(),
            heads: BTreeMap::new(),
        }
    }

    /// A new connection.
    pub fn accept(&mut self) -> ConnId {
        let id = self.server.handle_accept(self.now);
        self.pump();
        id
    }

    /// A new connection whose socket holds `unread` bytes core has not read
    /// (see [`unread`](Self::unread)), as a backlog connection's client may
    /// have sent before its accept.
    pub fn accept_holding(&mut self, unread: usize) -> ConnId {
        let id = self.server.handle_accept(self.now);
        self.unread.insert(id, unread);
        self.pump();
        id
    }

    /// The client sends `bytes`.
    pub fn send(&mut self, conn: ConnId, bytes: &[u8]) {
        self.server.handle_recv(conn, bytes, self.now);
        self.pump();
    }

    /// The client half-closes (FIN).
    pub fn eof(&mut self, conn: ConnId) {
        self.server.handle_peer_eof(conn, self.now);
        self.pump();
    }

    /// The connection is reset.
    pub fn abort(&mut self, conn: ConnId) {
        self.server.handle_aborted(conn, self.now);
        self.pump();
    }

    /// The stop signal.
    pub fn terminate(&mut self) {
        self.server.handle_terminate(self.now);
        self.pump();
    }

    /// The listen backlog has been accepted to the end.
    pub fn backlog_empty(&mut self) {
        self.server.handle_backlog_empty(self.now);
        self.pump();
    }

    /// Answers the oldest pending request on `conn`.
    pub fn respond(&mut self, conn: ConnId, status: u16, body: &'static [u8]) {
        let at = self
            .pending
            .iter()
            .position(|r| r.conn() == conn)
            .expect("no pending request on conn");
        let id = self.pending.remove(at);
        self.server
            .handle_response(
                id,
                status,
                [("Content-Type", "text/plain")],
                Bytes::from_static(body),
                self.now,
            )
            .expect("response accepted");
        self.pump();
    }

    /// Writes up to `n` queued bytes of `conn`.
    pub fn write(&mut self, conn: ConnId, n: usize) {
        let [a, b] = self.server.transmit(conn);
        let mut bytes = a.to_vec();
        bytes.extend_from_slice(b);
        bytes.truncate(n);
        let len = bytes.len();
        self.written
            .entry(conn)
            .or_default()
            .extend_from_slice(&bytes);
        self.server.handle_sent(conn, len, self.now);
        self.pump();
    }

    /// Moves the clock forward by `by`, firing every deadline on the way at
    /// its exact time.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(deadline) = self.server.poll_timeout() {
            if deadline > until || self.exit.is_some() {
                break;
            }
            self.now = self.now.max(deadline);
            self.server.handle_timeout(self.now);
            self.pump();
            // A deadline that handling does not move would spin a driver.
            if let Some(next) = self.server.poll_timeout() {
                assert!(
                    next > self.now,
                    "deadline {next:?} still due after handle_timeout"
                );
            }
        }
        self.now = until;
    }

    /// [`advance`](Self::advance) by `ms` milliseconds.
    pub fn advance_ms(&mut self, ms: u64) {
        self.advance(Duration::from_millis(ms));
    }

    /// Carries out every event core has, checking S1 after each.
    pub fn pump(&mut self) {
        while let Some(event) = self.server.poll_event() {
            match &event {
                Event::Request(id) => {
                    let head = self
                        .server
                        .request(*id)
                        .is_some_and(|r| r.method() == "HEAD");
                    self.heads.entry(id.conn()).or_default().push(head);
                    self.pending.push(*id);
                }
                Event::Transmit(conn) if self.auto_write => {
                    let conn = *conn;
                    let [a, b] = self.server.transmit(conn);
                    let n = a.len() + b.len();
                    let out = self.written.entry(conn).or_default();
                    out.extend_from_slice(a);
                    out.extend_from_slice(b);
                    self.server.handle_sent(conn, n, self.now);
                }
                // Answered at once, as a driver must: the FIONREAD of `unread`.
                Event::CountUnread(conn) => {
                    let unread = self.unread.get(conn).copied().unwrap_or(0);
                    self.server.handle_unread(*conn, unread, self.now);
                }
                Event::CloseListener => self.listener_closed = true,
                Event::Exit => {
                    assert!(self.exit.is_none(), "exit emitted twice");
                    self.exit = self.server.exit_report().cloned();
                }
                _ => {}
            }
            self.log.push(event);
            assert_invariants(&self.server);
        }
    }

    /// Everything written on `conn`, as text (lossy where it is not UTF-8).
    pub fn output(&self, conn: ConnId) -> String {
        String::from_utf8_lossy(self.written.get(&conn).map_or(&[][..], |v| &v[..])).into_owned()
    }

    /// The complete responses written on `conn`, interim ones included;
    /// panics if core wrote something that is not HTTP/1.1. The `n`th final
    /// response answers the `n`th request handed over (S4), or is core's
    /// rejection after them, so answers to `HEAD` are read without a body.
    pub fn responses(&self, conn: ConnId) -> Vec<Response> {
        let heads = self.heads.get(&conn).map_or(&[][..], |v| &v[..]);
        let mut finals = 0;
        let mut out = Vec::new();
        let written = self.written.get(&conn).map_or(&[][..], |v| &v[..]);
        ResponseParser::new()
            .feed_with(written, &mut out, |_| {
                finals += 1;
                heads.get(finals - 1).copied().unwrap_or(false)
            })
            .unwrap_or_else(|e| panic!("core wrote a malformed response on {conn:?}: {e}"));
        out
    }

    /// Whether core closed `conn`.
    pub fn closed(&self, conn: ConnId) -> bool {
        self.close_reason(conn).is_some()
    }

    /// Why `conn` was closed, if it was.
    pub fn close_reason(&self, conn: ConnId) -> Option<CloseReason> {
        self.log.iter().find_map(|e| match e {
            Event::Close(c, reason) if *c == conn => Some(*reason),
            _ => None,
        })
    }

    /// Whether core half-closed `conn`.
    pub fn half_closed(&self, conn: ConnId) -> bool {
        self.half_close_reason(conn).is_some()
    }

    /// Why `conn` was half-closed, if it was.
    pub fn half_close_reason(&self, conn: ConnId) -> Option<CloseReason> {
        self.log.iter().find_map(|e| match e {
            Event::HalfClose(c, reason) if *c == conn => Some(*reason),
            _ => None,
        })
    }

    /// Whether core emitted `Exit`.
    pub fn exited(&self) -> bool {
        self.exit.is_some()
    }
}

/// A `GET` of `path` with a `Host`, as bytes.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n").into_bytes()
}
