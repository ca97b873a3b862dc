//! The kernel model: a bounded listen backlog, and connections as two byte
//! pipes with latency, arbitrary segmentation, bounded buffers, FIN and RST.
//!
//! A reset does what it really does: the receiver's received-but-unread
//! bytes are destroyed. A socket closed with unread input — or one that
//! receives data after it was closed — sends a reset to its peer.

use std::collections::VecDeque;
use std::time::Duration;

use ebb_core::{ConnId, Time};

use crate::check::Observer;
use crate::trace;
use crate::world::{Cause, Ev, World};

/// Removes the first `n` bytes of `q` (copied slice-wise, not byte by byte).
pub fn take_front(q: &mut VecDeque<u8>, n: usize) -> Vec<u8> {
    let (a, b) = q.as_slices();
    let mut out = Vec::with_capacity(n);
    out.extend_from_slice(&a[..a.len().min(n)]);
    let rest = n - out.len();
    out.extend_from_slice(&b[..rest]);
    q.drain(..n);
    out
}

/// A direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client to server.
    C2s,
    /// Server to client.
    S2c,
}

#[derive(Debug)]
enum Seg {
    Data(Vec<u8>),
    Fin,
    Rst,
}

/// One direction: segments on the wire, then the receiver's unread bytes.
#[derive(Debug, Default)]
pub struct Pipe {
    wire: VecDeque<(Time, Seg)>,
    wire_bytes: usize,
    /// Delivered, not yet read.
    pub rx: VecDeque<u8>,
    /// FIN delivered (a read returns 0 once `rx` is empty).
    pub fin: bool,
    /// RST delivered.
    pub rst: bool,
    last_arrival: Time,
}

impl Pipe {
    /// Bytes held in this direction: on the wire plus unread.
    pub fn held(&self) -> usize {
        self.wire_bytes + self.rx.len()
    }
}

/// The server's end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Srv {
    /// In the listen backlog.
    Queued,
    Accepted(ConnId),
    Closed,
}

/// How the server's socket was closed, for judging lost responses.
#[derive(Clone, Copy, Debug)]
pub struct Closing {
    /// The core input whose `Close` event closed it (`None`: the listener
    /// closed with it in the backlog).
    pub cause: Option<Cause>,
    /// Whether losing a response to this close is allowed: a deadline
    /// (timer) or a forced exit, or linger giving up on too many bytes.
    pub loss_allowed: bool,
    /// Closed after the first terminate (so the drain report covers it).
    pub in_drain: bool,
    /// The world step it was closed in.
    pub step: u64,
}

/// A connection in the kernel, both ends.
#[derive(Debug)]
pub struct KConn {
    pub client: usize,
    pub latency: Duration,
    pub c2s: Pipe,
    pub s2c: Pipe,
    pub srv: Srv,
    /// The server shut its write half.
    pub wr_shut: bool,
    pub srv_rst_sent: bool,
    /// The driver stopped reading (core said `wants_read` false).
    pub paused: bool,
    pub eof_reported: bool,
    /// Bytes passed to `handle_recv`.
    pub recv_bytes: usize,
    /// `recv_bytes` when the drain began (0 if accepted during the drain).
    pub recv_at_drain: Option<usize>,
    pub closing: Option<Closing>,
    pub cli_closed: bool,
    pub cli_aborted: bool,
    pub cli_wr_shut: bool,
    pub cli_rst_sent: bool,
    /// The client could not write for lack of room.
    pub cli_blocked: bool,
    /// What core wrote on this connection, parsed.
    pub obs: Observer,
    /// A core-initiated close of this connection was classified already.
    pub classified: bool,
    /// A lost response on this connection was already judged.
    pub loss_judged: bool,
}

impl World {
    /// A client connects: `None` when refused (backlog full or listener
    /// closed), else the new connection, queued in the backlog.
    pub fn connect(&mut self, client: usize) -> Option<usize> {
        if !self.listener_open || self.backlog.len() >= self.knobs.backlog {
            self.stats.refused += 1;
            trace!(self, "net refuse client {client}");
            return None;
        }
        let (lo, hi) = self.knobs.latency;
        let latency = lo + self.rng.upto(hi - lo);
        let k = self.conns.len();
        self.conns.push(KConn {
            client,
            latency,
            c2s: Pipe::default(),
            s2c: Pipe::default(),
            srv: Srv::Queued,
            wr_shut: false,
            srv_rst_sent: false,
            paused: false,
            eof_reported: false,
            recv_bytes: 0,
            recv_at_drain: None,
            closing: None,
            cli_closed: false,
            cli_aborted: false,
            cli_wr_shut: false,
            cli_rst_sent: false,
            cli_blocked: false,
            obs: Observer::default(),
            classified: false,
            loss_judged: false,
        });
        self.stats.connections += 1;
        self.backlog.push_back(k);
        trace!(self, "net connect k{k} client {client} latency {latency:?}");
        if !self.accept_scheduled {
            self.accept_scheduled = true;
            let d = self.rng.upto(self.knobs.accept_delay);
            self.after(d, Ev::AcceptReady);
        }
        Some(k)
    }

    fn push(&mut self, k: usize, dir: Dir, seg: Seg) {
        let c = &mut self.conns[k];
        let jitter = Duration::from_nanos(self.rng.below(c.latency.as_nanos() as u64 / 4 + 1));
        let pipe = match dir {
            Dir::C2s => &mut c.c2s,
            Dir::S2c => &mut c.s2c,
        };
        let at = (self.now + c.latency + jitter)
            .max(pipe.last_arrival)
            .max(self.now + Duration::from_nanos(1));
        pipe.last_arrival = at;
        if let Seg::Data(d) = &seg {
            pipe.wire_bytes += d.len();
        }
        pipe.wire.push_back((at, seg));
        self.at(at, Ev::Arrive(k, dir));
    }

    /// Puts bytes on the wire, cut into segments of at most `mss` — but at
    /// most about 8 segments per write, so a tiny `mss` stays affordable.
    pub fn send_bytes(&mut self, k: usize, dir: Dir, mut bytes: &[u8]) {
        let floor = bytes.len() / 8;
        while !bytes.is_empty() {
            let n = self.rng.size(1, self.knobs.mss).max(floor).min(bytes.len());
            self.push(k, dir, Seg::Data(bytes[..n].to_vec()));
            bytes = &bytes[n..];
        }
    }

    /// Room a writer of `want` bytes may use now. Like TCP's silly-window
    /// avoidance, a writer that cannot write everything waits until a
    /// quarter of the buffer is free, instead of trickling tiny segments.
    pub fn room(&self, k: usize, dir: Dir, want: usize) -> usize {
        let c = &self.conns[k];
        let pipe = match dir {
            Dir::C2s => &c.c2s,
            Dir::S2c => &c.s2c,
        };
        let room = self.knobs.pipe_bytes.saturating_sub(pipe.held());
        if room < want && room < self.knobs.pipe_bytes / 4 {
            0
        } else {
            room
        }
    }

    /// The next segment of a direction arrives.
    pub fn on_arrive(&mut self, k: usize, dir: Dir) {
        let c = &mut self.conns[k];
        let pipe = match dir {
            Dir::C2s => &mut c.c2s,
            Dir::S2c => &mut c.s2c,
        };
        let Some((_, seg)) = pipe.wire.pop_front() else {
            return;
        };
        if let Seg::Data(d) = &seg {
            pipe.wire_bytes -= d.len();
        }
        match dir {
            Dir::C2s => self.arrive_at_server(k, seg),
            Dir::S2c => self.arrive_at_client(k, seg),
        }
    }

    fn arrive_at_server(&mut self, k: usize, seg: Seg) {
        let closed = self.conns[k].srv == Srv::Closed;
        match seg {
            Seg::Data(d) => {
                trace!(self, "net k{k} c2s data {}", d.len());
                if closed {
                    self.srv_reset(k);
                    return;
                }
                self.conns[k].c2s.rx.extend(d);
            }
            Seg::Fin => {
                trace!(self, "net k{k} c2s fin");
                if closed {
                    return;
                }
                self.conns[k].c2s.fin = true;
            }
            Seg::Rst => {
                trace!(self, "net k{k} c2s rst");
                if closed {
                    return;
                }
                let c = &mut self.conns[k];
                c.c2s.rst = true;
                c.c2s.rx.clear();
                if matches!(c.srv, Srv::Accepted(_)) {
                    // A reset is reported even to a driver that stopped reading.
                    self.driver_aborted(k);
                }
                return;
            }
        }
        if matches!(self.conns[k].srv, Srv::Accepted(_)) && !self.conns[k].paused {
            self.driver_read(k);
        }
    }

    fn arrive_at_client(&mut self, k: usize, seg: Seg) {
        let client = self.conns[k].client;
        match seg {
            Seg::Data(d) => {
                trace!(self, "net k{k} s2c data {}", d.len());
                if self.conns[k].cli_closed {
                    self.cli_reset(k);
                    // The dropped bytes no longer fill the server's buffer.
                    self.server_writable(k);
                    return;
                }
                self.conns[k].s2c.rx.extend(d);
                self.client_readable(client, k);
            }
            Seg::Fin => {
                trace!(self, "net k{k} s2c fin");
                if self.conns[k].cli_closed {
                    return;
                }
                self.conns[k].s2c.fin = true;
                self.client_readable(client, k);
            }
            Seg::Rst => {
                let c = &mut self.conns[k];
                if c.cli_closed {
                    trace!(self, "net k{k} s2c rst (client closed)");
                    return;
                }
                let destroyed = c.s2c.rx.len();
                c.s2c.rx.clear();
                c.s2c.rst = true;
                c.cli_closed = true;
                trace!(self, "net k{k} s2c rst destroys {destroyed} unread bytes");
                self.client_reset(client, k, destroyed);
                self.server_writable(k);
            }
        }
    }

    /// The server's socket sends a reset (once).
    fn srv_reset(&mut self, k: usize) {
        if !self.conns[k].srv_rst_sent {
            self.conns[k].srv_rst_sent = true;
            self.push(k, Dir::S2c, Seg::Rst);
        }
    }

    /// The client's socket sends a reset (once).
    fn cli_reset(&mut self, k: usize) {
        if !self.conns[k].cli_rst_sent {
            self.conns[k].cli_rst_sent = true;
            self.push(k, Dir::C2s, Seg::Rst);
        }
    }

    /// `shutdown(SHUT_WR)` on the server's socket.
    pub fn srv_half_close(&mut self, k: usize) {
        let c = &mut self.conns[k];
        if c.srv == Srv::Closed || c.wr_shut {
            return;
        }
        c.wr_shut = true;
        self.push(k, Dir::S2c, Seg::Fin);
    }

    /// `close` on the server's socket: a reset if input is unread, else FIN.
    pub fn srv_close(&mut self, k: usize, closing: Closing) {
        let c = &mut self.conns[k];
        c.srv = Srv::Closed;
        c.closing = Some(closing);
        let unread = c.c2s.rx.len();
        trace!(self, "net k{k} server close, {unread} bytes unread");
        if unread > 0 {
            self.conns[k].c2s.rx.clear();
            self.srv_reset(k);
        } else if !self.conns[k].wr_shut {
            self.conns[k].wr_shut = true;
            self.push(k, Dir::S2c, Seg::Fin);
        }
    }

    /// The listener closes with `k` still queued: Linux resets it.
    pub fn srv_reset_queued(&mut self, k: usize) {
        self.conns[k].srv = Srv::Closed;
        self.conns[k].closing = Some(Closing {
            cause: None,
            loss_allowed: false,
            in_drain: self.terminates > 0,
            step: self.step,
        });
        self.stats.backlog_reset += 1;
        self.srv_reset(k);
    }

    /// The client closes its socket: a reset if it left bytes unread, else FIN.
    pub fn cli_close(&mut self, k: usize) {
        let c = &mut self.conns[k];
        if c.cli_closed {
            return;
        }
        c.cli_closed = true;
        if !c.s2c.rx.is_empty() {
            c.s2c.rx.clear();
            self.cli_reset(k);
            self.server_writable(k);
        } else if !c.cli_wr_shut {
            c.cli_wr_shut = true;
            self.push(k, Dir::C2s, Seg::Fin);
        }
    }

    /// The client aborts (`SO_LINGER` 0, then close): a reset.
    pub fn cli_abort(&mut self, k: usize) {
        let c = &mut self.conns[k];
        c.cli_aborted = true;
        c.cli_closed = true;
        c.s2c.rx.clear();
        self.cli_reset(k);
        self.server_writable(k);
    }

    /// `shutdown(SHUT_WR)` on the client's socket.
    pub fn cli_shutdown(&mut self, k: usize) {
        let c = &mut self.conns[k];
        if !c.cli_wr_shut && !c.cli_closed {
            c.cli_wr_shut = true;
            self.push(k, Dir::C2s, Seg::Fin);
        }
    }
}
