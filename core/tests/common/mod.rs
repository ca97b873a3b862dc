//! An in-memory driver for core: it carries out every event at once, writes
//! whatever core transmits (unless told not to), and keeps a virtual clock
//! that jumps to the next deadline.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::BTreeMap;
use std::time::Duration;

use ebb_core::{Bytes, CloseReason, Config, ConnId, DrainReport, Event, RequestId, Server, Time};

pub struct Harness {
    pub server: Server,
    pub now: Time,
    /// Every event polled, in order.
    pub log: Vec<Event>,
    /// Bytes written on each connection.
    pub written: BTreeMap<ConnId, Vec<u8>>,
    /// Requests handed to the application and not yet answered.
    pub pending: Vec<RequestId>,
    /// Whether Transmit events are written at once.
    pub auto_write: bool,
    pub listener_closed: bool,
    pub exit: Option<DrainReport>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(Config::default())
    }

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
        }
    }

    pub fn accept(&mut self) -> ConnId {
        let id = self.server.handle_accept(self.now);
        self.pump();
        id
    }

    pub fn send(&mut self, conn: ConnId, bytes: &[u8]) {
        self.server.handle_recv(conn, bytes, self.now);
        self.pump();
    }

    pub fn eof(&mut self, conn: ConnId) {
        self.server.handle_peer_eof(conn, self.now);
        self.pump();
    }

    pub fn abort(&mut self, conn: ConnId) {
        self.server.handle_aborted(conn, self.now);
        self.pump();
    }

    pub fn terminate(&mut self) {
        self.server.handle_terminate(self.now);
        self.pump();
    }

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

    pub fn advance_ms(&mut self, ms: u64) {
        self.advance(Duration::from_millis(ms));
    }

    /// Carries out every event core has.
    pub fn pump(&mut self) {
        while let Some(event) = self.server.poll_event() {
            match &event {
                Event::Request(id) => self.pending.push(*id),
                Event::Transmit(conn) if self.auto_write => {
                    let conn = *conn;
                    let [a, b] = self.server.transmit(conn);
                    let n = a.len() + b.len();
                    let out = self.written.entry(conn).or_default();
                    out.extend_from_slice(a);
                    out.extend_from_slice(b);
                    self.server.handle_sent(conn, n, self.now);
                }
                Event::CloseListener => self.listener_closed = true,
                Event::Exit(report) => {
                    assert!(self.exit.is_none(), "exit emitted twice");
                    self.exit = Some(report.clone());
                }
                _ => {}
            }
            self.log.push(event);
            if let Err(broken) = self.server.check_invariants() {
                panic!("core invariant broken: {broken}");
            }
        }
    }

    pub fn output(&self, conn: ConnId) -> String {
        String::from_utf8_lossy(self.written.get(&conn).map_or(&[][..], |v| &v[..])).into_owned()
    }

    pub fn responses(&self, conn: ConnId) -> Vec<String> {
        split_responses(&self.output(conn))
    }

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

    pub fn exited(&self) -> bool {
        self.exit.is_some()
    }
}

/// Splits a byte stream of responses (each with Content-Length, or none for
/// 1xx/204/304) into whole responses.
pub fn split_responses(mut text: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(end) = text.find("\r\n\r\n") {
        let head = &text[..end + 4];
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        let bodyless = head.contains(" 100 Continue")
            || head.starts_with("HTTP/1.1 204")
            || head.starts_with("HTTP/1.1 304");
        let total = end + 4 + if bodyless { 0 } else { len };
        let total = total.min(text.len());
        out.push(text[..total].to_owned());
        text = &text[total..];
    }
    out
}

pub fn status_of(response: &str) -> u16 {
    response[9..12].parse().unwrap()
}

pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n").into_bytes()
}
