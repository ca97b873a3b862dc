//! Clients: small state machines that write real HTTP/1.1 bytes, parse the
//! responses, and behave like the clients a server meets — well, slowly,
//! rudely, or not at all. A request is retried (on a new connection, a
//! bounded number of times) only when no byte of its response arrived
//! (RFC 9112 §9.3.1).

use std::collections::VecDeque;
use std::time::Duration;

use crate::http::{self, Resp, RespParser, Shape};
use crate::kernel::Dir;
use crate::knobs::Knobs;
use crate::rng::Rng;
use crate::trace;
use crate::world::{Ev, World};

/// The kinds of client; each seed weighs them differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One to four requests, one at a time.
    Normal,
    /// Two to eight requests written at once.
    Pipelined,
    /// Requests with idle think time between them on one connection.
    KeepAlive,
    /// A head written a few bytes at a time.
    Slowloris,
    /// Aborts (RST) mid-head, mid-body, after the request, or mid-response.
    Aborting,
    /// Writes its requests, then shuts down its write half.
    HalfClosing,
    /// Connects and never sends a byte.
    Silent,
    /// One body up to twice `max_body_bytes` (over it: 413 expected).
    LargeBody,
    /// `Expect: 100-continue`, body sent on `100` (or after a wait).
    ExpectContinue,
    /// Bytes that are not HTTP (4xx and close expected).
    Garbage,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Normal,
        Kind::Pipelined,
        Kind::KeepAlive,
        Kind::Slowloris,
        Kind::Aborting,
        Kind::HalfClosing,
        Kind::Silent,
        Kind::LargeBody,
        Kind::ExpectContinue,
        Kind::Garbage,
    ];
}

/// Where an aborting client resets its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortAt {
    MidHead,
    MidBody,
    AfterRequest,
    MidResponse,
}

/// What became of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Unsent,
    Sent,
    /// The application's complete answer arrived.
    Complete,
    /// Core refused it with this status.
    Rejected(u16),
    /// Part of a response arrived, then the connection ended.
    Lost,
    /// No byte of a response ever came, and retries ran out.
    GaveUp,
    /// The client aborted.
    Aborted,
}

/// The answer a request should get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Answer,
    TooLarge,
    Reject,
}

/// One request of a client's script.
#[derive(Clone, Debug)]
pub struct Req {
    pub shape: Shape,
    pub garbage: bool,
    pub expect: Expect,
    pub fate: Fate,
    pub attempt: u32,
    /// Bytes of the current attempt.
    pub raw_len: usize,
    /// A byte of its response arrived.
    pub got_byte: bool,
    /// The attempt the application failed (core answers it with 500).
    pub fault_attempt: Option<u32>,
}

/// A client's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A slowloris writes its next few bytes.
    Flush,
    /// Keep-alive think time is over.
    Think,
    Abort,
    /// Stop waiting for `100 Continue`.
    Continue,
    /// A silent client gives up.
    SilentEnd,
}

/// One client.
#[derive(Debug)]
pub struct Client {
    pub kind: Kind,
    pub reqs: Vec<Req>,
    depth: usize,
    pace: Option<(Duration, usize)>,
    abort: Option<AbortAt>,
    half_close: bool,
    silent_for: Duration,
    read_delay: Duration,
    read_chunk: usize,
    pub sock: Option<usize>,
    outbox: VecDeque<u8>,
    held_body: Option<Vec<u8>>,
    inflight: VecDeque<usize>,
    parser: RespParser,
    closing: bool,
    thinking: bool,
    read_scheduled: bool,
    flush_scheduled: bool,
    pub done: bool,
    conns_left: u32,
    retries_left: u32,
}

fn small_shape(rng: &mut Rng) -> Shape {
    let body_len = if rng.percent(50) { 0 } else { rng.size(1, 300) };
    let http10 = rng.percent(10);
    Shape {
        body_len,
        // Chunked framing does not exist in HTTP/1.0.
        chunks: (body_len > 0 && !http10 && rng.percent(25)).then(|| rng.size(1, 4)),
        expect_continue: false,
        close: http10 && rng.percent(50),
        http10,
    }
}

impl Client {
    /// A client of `kind`, its script drawn from `rng`.
    pub fn new(kind: Kind, rng: &mut Rng, knobs: &Knobs) -> Client {
        let max_body = knobs.config.max_body_bytes as usize;
        let count = match kind {
            Kind::Normal | Kind::Aborting => rng.size(1, 4),
            Kind::Pipelined => rng.size(2, 8),
            Kind::KeepAlive => rng.size(2, 5),
            Kind::Slowloris | Kind::HalfClosing => rng.size(1, 3),
            Kind::Silent => 0,
            Kind::LargeBody | Kind::ExpectContinue | Kind::Garbage => 1,
        };
        let mut reqs: Vec<Req> = (0..count)
            .map(|_| {
                let mut shape = small_shape(rng);
                match kind {
                    Kind::LargeBody | Kind::ExpectContinue => {
                        shape.body_len = rng.log(1, 2 * max_body as u64) as usize;
                        shape.chunks =
                            (kind == Kind::LargeBody && rng.percent(30)).then(|| rng.size(1, 8));
                        shape.expect_continue = kind == Kind::ExpectContinue;
                        shape.http10 = false;
                        shape.close = false;
                    }
                    Kind::Aborting => shape.body_len = shape.body_len.max(rng.size(1, 300)),
                    _ => {}
                }
                let expect = match kind {
                    Kind::Garbage => Expect::Reject,
                    _ if shape.body_len > max_body => Expect::TooLarge,
                    _ => Expect::Answer,
                };
                Req {
                    shape,
                    garbage: kind == Kind::Garbage,
                    expect,
                    fate: Fate::Unsent,
                    attempt: 0,
                    raw_len: 0,
                    got_byte: false,
                    fault_attempt: None,
                }
            })
            .collect();
        if let Some(last) = reqs.last_mut() {
            last.shape.close |= kind == Kind::Normal && rng.percent(20);
        }
        let abort = (kind == Kind::Aborting).then(|| match rng.below(4) {
            0 => AbortAt::MidHead,
            1 => AbortAt::MidBody,
            2 => AbortAt::AfterRequest,
            _ => AbortAt::MidResponse,
        });
        let pace = (kind == Kind::Slowloris).then(|| {
            let per = knobs.config.header_read_timeout.as_micros() as u64 / 10;
            (rng.micros(100, per.max(200)), rng.size(1, 4))
        });
        Client {
            kind,
            depth: match kind {
                Kind::Pipelined | Kind::HalfClosing => count,
                _ => 1,
            },
            reqs,
            pace,
            abort,
            half_close: kind == Kind::HalfClosing,
            silent_for: rng.upto(knobs.config.keep_alive_timeout * 2),
            read_delay: rng.upto(knobs.client_read_delay),
            read_chunk: if abort == Some(AbortAt::MidResponse) {
                rng.size(1, 64)
            } else {
                rng.log(512, 64 * 1024) as usize
            },
            sock: None,
            outbox: VecDeque::new(),
            held_body: None,
            inflight: VecDeque::new(),
            parser: RespParser::default(),
            closing: false,
            thinking: false,
            read_scheduled: false,
            flush_scheduled: false,
            done: false,
            conns_left: count as u32 + 3,
            retries_left: 3,
        }
    }

    fn unresolved(&self) -> bool {
        self.reqs
            .iter()
            .any(|r| matches!(r.fate, Fate::Unsent | Fate::Sent))
    }
}

impl World {
    /// The client (re)connects and starts writing.
    pub fn client_start(&mut self, ci: usize) {
        let c = &mut self.clients[ci];
        if c.done {
            return;
        }
        c.conns_left = c.conns_left.saturating_sub(1);
        let Some(k) = self.connect(ci) else {
            self.client_reconnect_or_finish(ci);
            return;
        };
        let c = &mut self.clients[ci];
        c.sock = Some(k);
        trace!(self, "client {ci} {:?} on k{k}", self.clients[ci].kind);
        if self.clients[ci].kind == Kind::Silent {
            let d = self.clients[ci].silent_for;
            self.after(d, Ev::ClientWake(ci, k, Wake::SilentEnd));
        }
        self.client_fill(ci);
        self.client_flush(ci);
    }

    /// Queues as many requests as the client's pipelining depth allows.
    fn client_fill(&mut self, ci: usize) {
        let c = &self.clients[ci];
        let Some(k) = c.sock else { return };
        if c.closing || c.thinking || c.held_body.is_some() || self.conns[k].cli_wr_shut {
            return;
        }
        while self.clients[ci].inflight.len() < self.clients[ci].depth {
            let c = &mut self.clients[ci];
            // RFC 9112 §9.6: nothing more after a request that closes.
            if c.inflight.iter().any(|&i| c.reqs[i].shape.close) {
                break;
            }
            let Some(i) = c.reqs.iter().position(|r| r.fate == Fate::Unsent) else {
                break;
            };
            let r = &mut c.reqs[i];
            let tok = http::token(ci, i, r.attempt);
            let (head, body) = if r.garbage {
                let mut g = vec![1u8];
                let n = self.rng.size(0, 100);
                g.extend((0..n).map(|_| b' ' + self.rng.below(95) as u8));
                g.extend_from_slice(b"\r\n\r\n");
                (g, Vec::new())
            } else {
                http::request(&tok, i, r.shape)
            };
            r.raw_len = head.len() + body.len();
            r.fate = Fate::Sent;
            r.got_byte = false;
            c.inflight.push_back(i);
            trace!(
                self,
                "client {ci} sends {tok} ({} bytes)",
                head.len() + body.len()
            );
            let c = &mut self.clients[ci];
            let plan = c.abort.filter(|a| *a != AbortAt::MidResponse);
            let body_empty = body.is_empty();
            match plan {
                Some(AbortAt::MidHead) | Some(AbortAt::MidBody)
                    if body_empty || plan == Some(AbortAt::MidHead) =>
                {
                    c.abort = None;
                    let cut = self.rng.size(1, head.len() - 1);
                    self.clients[ci].outbox.extend(&head[..cut]);
                    self.arm_abort(ci, k);
                    break;
                }
                Some(AbortAt::MidBody) => {
                    c.abort = None;
                    let cut = self.rng.size(0, body.len() - 1);
                    let c = &mut self.clients[ci];
                    c.outbox.extend(&head);
                    c.outbox.extend(&body[..cut]);
                    self.arm_abort(ci, k);
                    break;
                }
                _ => {}
            }
            let c = &mut self.clients[ci];
            c.outbox.extend(&head);
            if c.reqs[i].shape.expect_continue && !body_empty {
                c.held_body = Some(body);
                let d = self.rng.micros(1_000, 1_000_000);
                self.after(d, Ev::ClientWake(ci, k, Wake::Continue));
                break;
            }
            c.outbox.extend(&body);
            if plan == Some(AbortAt::AfterRequest) {
                c.abort = None;
                self.arm_abort(ci, k);
            }
        }
    }

    fn arm_abort(&mut self, ci: usize, k: usize) {
        let d = self
            .rng
            .upto(self.knobs.latency.1 * 4 + Duration::from_millis(10));
        self.after(d, Ev::ClientWake(ci, k, Wake::Abort));
    }

    /// Writes queued bytes while there is room (a slowloris: a few at a time).
    fn client_flush(&mut self, ci: usize) {
        let Some(k) = self.clients[ci].sock else {
            return;
        };
        if self.conns[k].cli_closed {
            return;
        }
        while !self.clients[ci].outbox.is_empty() {
            let room = self.room(k, Dir::C2s, self.clients[ci].outbox.len());
            if room == 0 {
                self.conns[k].cli_blocked = true;
                return;
            }
            let c = &mut self.clients[ci];
            let mut n = c.outbox.len().min(room);
            if let Some((_, chunk)) = c.pace {
                n = n.min(chunk);
            }
            let bytes = crate::kernel::take_front(&mut c.outbox, n);
            self.send_bytes(k, Dir::C2s, &bytes);
            let c = &mut self.clients[ci];
            if let Some((every, _)) = c.pace {
                if !c.outbox.is_empty() && !c.flush_scheduled {
                    c.flush_scheduled = true;
                    self.after(every, Ev::ClientWake(ci, k, Wake::Flush));
                }
                if !self.clients[ci].outbox.is_empty() {
                    return;
                }
            }
        }
        let c = &self.clients[ci];
        let all_sent = !c.reqs.iter().any(|r| r.fate == Fate::Unsent);
        if c.half_close && all_sent && c.held_body.is_none() {
            trace!(self, "client {ci} shuts down its write half on k{k}");
            self.cli_shutdown(k);
        }
    }

    /// The server read from `k`: a blocked client may write again.
    pub fn client_writable(&mut self, k: usize) {
        let c = &mut self.conns[k];
        if c.cli_blocked && !c.cli_closed {
            c.cli_blocked = false;
            let ci = c.client;
            if !self.clients[ci].flush_scheduled {
                self.client_flush(ci);
            }
        }
    }

    /// Bytes or FIN arrived on `k`: read now, or after the read delay.
    pub fn client_readable(&mut self, ci: usize, k: usize) {
        let c = &mut self.clients[ci];
        if c.sock != Some(k) {
            return;
        }
        if c.read_delay.is_zero() {
            self.client_read(ci, k);
        } else if !c.read_scheduled {
            c.read_scheduled = true;
            let d = c.read_delay;
            self.after(d, Ev::ClientRead(ci, k));
        }
    }

    /// The client reads what it can.
    pub fn client_read(&mut self, ci: usize, k: usize) {
        self.clients[ci].read_scheduled = false;
        loop {
            if self.clients[ci].sock != Some(k) {
                return;
            }
            let rx = &mut self.conns[k].s2c.rx;
            if rx.is_empty() {
                break;
            }
            let n = rx.len().min(self.clients[ci].read_chunk);
            let bytes = crate::kernel::take_front(rx, n);
            trace!(self, "client {ci} reads {n} on k{k}");
            self.server_writable(k);
            self.client_bytes(ci, k, &bytes);
            let c = &mut self.clients[ci];
            if !c.read_delay.is_zero() && c.sock == Some(k) && !self.conns[k].s2c.rx.is_empty() {
                c.read_scheduled = true;
                let d = c.read_delay;
                self.after(d, Ev::ClientRead(ci, k));
                return;
            }
        }
        if self.conns[k].s2c.fin {
            if self.clients[ci].parser.mid_response() {
                self.loss(k, "connection ended (FIN) mid-response");
            }
            trace!(self, "client {ci} reads EOF on k{k}");
            self.client_conn_ended(ci);
        }
    }

    fn client_bytes(&mut self, ci: usize, k: usize, bytes: &[u8]) {
        let c = &mut self.clients[ci];
        let Some(&front) = c.inflight.front() else {
            self.fail(format!(
                "client {ci}: {} response bytes with no request outstanding on k{k}",
                bytes.len()
            ));
            return;
        };
        c.reqs[front].got_byte = true;
        let mut out = Vec::new();
        if let Err(e) = c.parser.feed(bytes, &mut out) {
            self.fail(format!("client {ci}: malformed response on k{k}: {e}"));
            return;
        }
        for resp in out {
            self.client_response(ci, k, resp);
            if self.clients[ci].sock != Some(k) || self.failure.is_some() {
                return;
            }
        }
        let c = &mut self.clients[ci];
        if c.parser.mid_response() {
            if let Some(&f) = c.inflight.front() {
                c.reqs[f].got_byte = true;
            }
            if c.abort == Some(AbortAt::MidResponse) {
                c.abort = None;
                self.client_abort(ci);
            }
        }
    }

    fn client_response(&mut self, ci: usize, k: usize, resp: Resp) {
        let c = &mut self.clients[ci];
        if resp.status < 200 {
            if let Some(body) = c.held_body.take() {
                c.outbox.extend(body);
                self.client_flush(ci);
            }
            return;
        }
        let Some(i) = c.inflight.pop_front() else {
            self.fail(format!(
                "client {ci}: response {} with no request outstanding",
                resp.status
            ));
            return;
        };
        if let Some(&f) = c.inflight.front() {
            c.reqs[f].got_byte = false;
        }
        c.held_body = None;
        let r = &mut c.reqs[i];
        let tok = http::token(ci, i, r.attempt);
        trace!(
            self,
            "client {ci} got {} for {tok} on k{k}{}",
            resp.status,
            if resp.close { " (close)" } else { "" }
        );
        let c = &mut self.clients[ci];
        let r = &mut c.reqs[i];
        match &resp.token {
            Some(t) => {
                if *t != tok {
                    let t = t.clone();
                    self.fail(format!(
                        "client {ci}: got the answer to {t} while waiting for {tok}: out of order"
                    ));
                    return;
                }
                if r.expect != Expect::Answer || !matches!(resp.status, 200 | 204) {
                    let e = r.expect;
                    self.fail(format!(
                        "client {ci}: {tok} ({e:?}) was answered by the application with {}",
                        resp.status
                    ));
                    return;
                }
                r.fate = Fate::Complete;
                self.stats.answered += 1;
            }
            None if resp.status == 500 && r.fault_attempt == Some(r.attempt) => {
                // The application failed it; core's 500 is its answer.
                r.fate = Fate::Complete;
                self.stats.answered += 1;
                self.stats.faulted += 1;
            }
            None => {
                let ok = resp.status == 408
                    || match r.expect {
                        Expect::TooLarge => resp.status == 413,
                        Expect::Reject => resp.status >= 400,
                        Expect::Answer => false,
                    };
                if !ok || !resp.close {
                    let e = r.expect;
                    self.fail(format!(
                        "client {ci}: {tok} ({e:?}) rejected with {} (close: {})",
                        resp.status, resp.close
                    ));
                    return;
                }
                r.fate = Fate::Rejected(resp.status);
                self.stats.rejected += 1;
            }
        }
        let c = &mut self.clients[ci];
        c.closing |= resp.close;
        if !c.unresolved() {
            self.client_finish(ci);
        } else if c.closing {
            // The server closes next; what is left goes on a new connection.
        } else if c.kind == Kind::KeepAlive && c.inflight.is_empty() {
            c.thinking = true;
            let d = self.rng.upto(self.knobs.think);
            self.after(d, Ev::ClientWake(ci, k, Wake::Think));
        } else {
            self.client_fill(ci);
            self.client_flush(ci);
        }
    }

    /// A reset arrived on `k`; `destroyed` unread bytes went with it.
    pub fn client_reset(&mut self, ci: usize, k: usize, destroyed: usize) {
        if self.clients[ci].sock != Some(k) {
            return;
        }
        if destroyed > 0 || self.clients[ci].parser.mid_response() {
            self.loss(
                k,
                &format!("reset destroyed {destroyed} unread response bytes"),
            );
        }
        self.client_conn_ended(ci);
    }

    /// The connection is over (FIN read, or reset): retry what got no byte.
    fn client_conn_ended(&mut self, ci: usize) {
        let c = &mut self.clients[ci];
        if let Some(k) = c.sock.take() {
            self.cli_close(k);
        }
        let c = &mut self.clients[ci];
        while let Some(i) = c.inflight.pop_front() {
            let r = &mut c.reqs[i];
            if r.got_byte {
                r.fate = Fate::Lost;
            } else if c.retries_left > 0 {
                c.retries_left -= 1;
                r.attempt += 1;
                r.fate = Fate::Unsent;
            } else {
                r.fate = Fate::GaveUp;
            }
        }
        c.parser = RespParser::default();
        c.outbox.clear();
        c.held_body = None;
        c.closing = false;
        c.thinking = false;
        c.flush_scheduled = false;
        self.client_reconnect_or_finish(ci);
    }

    fn client_reconnect_or_finish(&mut self, ci: usize) {
        let c = &mut self.clients[ci];
        if !c.unresolved() {
            self.client_finish(ci);
        } else if c.conns_left == 0 {
            for r in c.reqs.iter_mut().filter(|r| r.fate == Fate::Unsent) {
                r.fate = Fate::GaveUp;
            }
            self.client_finish(ci);
        } else {
            let d = self.rng.micros(1_000, 50_000);
            self.after(d, Ev::ClientStart(ci));
        }
    }

    fn client_finish(&mut self, ci: usize) {
        let c = &mut self.clients[ci];
        c.done = true;
        if let Some(k) = c.sock.take() {
            trace!(self, "client {ci} done, closes k{k}");
            self.cli_close(k);
        }
    }

    fn client_abort(&mut self, ci: usize) {
        let c = &mut self.clients[ci];
        let Some(k) = c.sock.take() else { return };
        for r in c
            .reqs
            .iter_mut()
            .filter(|r| matches!(r.fate, Fate::Unsent | Fate::Sent))
        {
            r.fate = Fate::Aborted;
        }
        c.inflight.clear();
        c.done = true;
        trace!(self, "client {ci} aborts k{k}");
        self.cli_abort(k);
    }

    /// A client timer fired (ignored if it was for an older connection).
    pub fn client_wake(&mut self, ci: usize, k: usize, wake: Wake) {
        let c = &mut self.clients[ci];
        if c.done || c.sock != Some(k) {
            return;
        }
        match wake {
            Wake::Flush => {
                c.flush_scheduled = false;
                self.client_flush(ci);
            }
            Wake::Think => {
                c.thinking = false;
                self.client_fill(ci);
                self.client_flush(ci);
            }
            Wake::Abort => self.client_abort(ci),
            Wake::Continue => {
                if let Some(body) = c.held_body.take() {
                    c.outbox.extend(body);
                    self.client_flush(ci);
                }
            }
            Wake::SilentEnd => self.client_finish(ci),
        }
    }
}
