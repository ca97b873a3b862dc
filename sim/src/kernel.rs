//! The kernel model: a bounded listen backlog, and connections as two byte
//! pipes with latency, arbitrary segmentation, bounded buffers, FIN and RST.
//!
//! A reset does what it really does: the receiver's received-but-unread
//! bytes are destroyed. A socket closed with unread input — or one that
//! receives data after it was closed — sends a reset to its peer. Closing the
//! listener resets what is still queued (Linux without `tcp_migrate_req`).
//!
//! The kernel calls no one. What the endpoints must learn (readable,
//! writable, reset) it queues as [`Notice`]s, which the world hands to the
//! driver and the clients once the current operation is over — as a real
//! kernel wakes a poller.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

use crate::env::{Env, Ev};
use crate::knobs::Knobs;
use crate::trace;

/// A direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client to server.
    C2s,
    /// Server to client.
    S2c,
}

/// What the kernel tells an endpoint (the world routes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Data or FIN reached the server's socket of connection `k`.
    ServerReadable(usize),
    /// Connection `k`'s server-to-client buffer has room again.
    ServerWritable(usize),
    /// A reset reached the server's socket of connection `k`.
    ServerReset(usize),
    /// Data or FIN reached client `.0`'s socket of connection `.1`.
    ClientReadable(usize, usize),
    /// Client `.0`'s connection `.1` has room again.
    ClientWritable(usize, usize),
    /// A reset reached client `.0` on connection `.1`, destroying `.2` unread
    /// bytes.
    ClientReset(usize, usize, usize),
}

/// A segment on the wire: its data bytes are counted here and held in
/// order in [`Pipe::bytes`], so a segment moves by a count, not a copy.
#[derive(Debug)]
enum Seg {
    Data(usize),
    Fin,
    Rst,
}

/// One direction: segments on the wire, then the receiver's unread bytes.
#[derive(Debug, Default)]
struct Pipe {
    /// Segments with their arrival, in nanoseconds.
    wire: VecDeque<(u64, Seg)>,
    /// The bytes sent, from `bytes[read..]` on not yet read: the first
    /// `unread` of those reached the receiver's socket, the rest are on the
    /// wire in segment order. One run, so a read is a slice of it.
    bytes: Vec<u8>,
    /// Bytes at the front of `bytes` already read (or destroyed), dropped
    /// once they are at least half of it.
    read: usize,
    /// Delivered, not yet read.
    unread: usize,
    /// FIN delivered (a read returns 0 once nothing is unread).
    fin: bool,
    /// RST delivered.
    rst: bool,
    /// The sender has put a RST on this pipe (a socket resets its peer once).
    rst_sent: bool,
    /// The sender found no room and waits to be told there is.
    writer_waits: bool,
    /// When the last segment arrives, in nanoseconds.
    last_arrival: u64,
    /// Bytes ever delivered to the receiver's socket: a position in the
    /// byte stream, which the checker's ledger of requests is kept in.
    delivered: u64,
}

impl Pipe {
    /// Bytes held in this direction: on the wire plus unread.
    fn held(&self) -> usize {
        self.bytes.len() - self.read
    }

    /// An empty pipe whose buffers are `spare` (an ended connection's).
    fn with(spare: Spare) -> Pipe {
        Pipe {
            wire: spare.wire,
            bytes: spare.bytes,
            ..Pipe::default()
        }
    }

    /// The sender puts `len` bytes, in `parts`, one after another, on the
    /// wire. The bytes already read are dropped first when nothing else is
    /// held (nothing to move), or when the new bytes would not fit
    /// otherwise and they are at least half of the buffer (so what moves
    /// is no more than what was sent since the last move).
    fn send(&mut self, parts: &[&[u8]], len: usize) {
        let fits = self.bytes.len() + len <= self.bytes.capacity();
        if self.held() == 0 || (!fits && self.read >= self.held()) {
            self.bytes.drain(..self.read);
            self.read = 0;
        }
        self.bytes.reserve(len);
        for part in parts {
            self.bytes.extend_from_slice(part);
        }
    }

    /// The pipe's buffers, emptied, if it has any: its connection is over.
    fn take_spare(&mut self) -> Option<Spare> {
        if self.bytes.capacity() == 0 && self.wire.capacity() == 0 {
            return None;
        }
        self.read = 0;
        self.bytes.clear();
        self.wire.clear();
        Some(Spare {
            wire: std::mem::take(&mut self.wire),
            bytes: std::mem::take(&mut self.bytes),
        })
    }

    /// The next `n` bytes on the wire reach the receiver's socket.
    fn deliver(&mut self, n: usize) {
        self.unread += n;
        self.delivered += n as u64;
    }

    /// The next `n` bytes on the wire reach a closed socket and are dropped.
    fn drop_arriving(&mut self, n: usize) {
        let from = self.read + self.unread;
        self.bytes.drain(from..from + n);
    }

    /// The receiver reads the first `n` unread bytes: where they are in
    /// `bytes`.
    fn read(&mut self, n: usize) -> Range<usize> {
        assert!(n <= self.unread, "reads only what was delivered");
        self.unread -= n;
        self.read += n;
        self.read - n..self.read
    }

    /// Destroys the unread bytes (a close or a reset); returns how many.
    fn destroy_unread(&mut self) -> usize {
        let n = std::mem::take(&mut self.unread);
        self.read += n;
        n
    }

    /// Puts `seg` on the wire to arrive at `at` nanoseconds, or with the
    /// segment before it if that arrives later. Returns when it arrives,
    /// unless it needs no arrival of its own: data arriving at the very
    /// instant the segment before it does arrives with it, as one.
    fn put(&mut self, seg: Seg, at: u64) -> Option<u64> {
        let at = at.max(self.last_arrival);
        self.last_arrival = at;
        if let Seg::Data(n) = seg {
            if let Some((last_at, Seg::Data(last))) = self.wire.back_mut() {
                if *last_at == at {
                    *last += n;
                    return None;
                }
            }
        }
        self.wire.push_back((at, seg));
        Some(at)
    }
}

/// A pipe's buffers, kept from a connection that is over for a later one,
/// which then need not allocate and grow its own — in this world, or in
/// the next one the thread runs ([`SPARES`]).
#[derive(Debug, Default)]
struct Spare {
    wire: VecDeque<(u64, Seg)>,
    bytes: Vec<u8>,
}

/// How many buffers a thread keeps between worlds.
const KEPT_SPARES: usize = 32;

thread_local! {
    /// Pipe buffers of the worlds this thread ran: a kernel starts with
    /// them and gives them back when dropped. A seed then neither
    /// allocates nor grows buffers that an earlier one grew, nor makes the
    /// allocator take fresh pages from the system (each one a page fault)
    /// for them after the last seed's were handed back to it.
    static SPARES: RefCell<Vec<Spare>> = const { RefCell::new(Vec::new()) };
}

/// The server's end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerEnd {
    /// In the listen backlog.
    Queued,
    /// Accepted, both halves open.
    Open,
    /// Accepted, write half shut (FIN sent); still reading.
    WriteShut,
    /// Closed (or reset while queued).
    Closed,
}

/// The client's end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientEnd {
    Open,
    /// `shutdown(SHUT_WR)`: FIN sent, still reading.
    WriteShut,
    /// Closed by the client, or by a reset from the server.
    Closed,
    /// The client aborted (`SO_LINGER` 0 and close: a reset).
    Aborted,
}

/// A connection in the kernel, both ends.
#[derive(Debug)]
struct KConn {
    client: usize,
    /// The latency in nanoseconds, and the bound of a segment's jitter (a
    /// quarter of it, plus one): worked out once, not per segment.
    latency_nanos: u64,
    jitter_bound: u64,
    c2s: Pipe,
    s2c: Pipe,
    server: ServerEnd,
    client_end: ClientEnd,
}

impl KConn {
    fn pipe(&mut self, dir: Dir) -> &mut Pipe {
        match dir {
            Dir::C2s => &mut self.c2s,
            Dir::S2c => &mut self.s2c,
        }
    }

    fn client_closed(&self) -> bool {
        matches!(self.client_end, ClientEnd::Closed | ClientEnd::Aborted)
    }

    /// Puts `seg` on the wire of `dir`, sent at `now` (nanoseconds), to
    /// arrive after the latency and a jitter — at least a nanosecond later,
    /// never at the send's instant — and schedules its arrival. Inlined
    /// into [`Kernel::send`]'s loop over the segments of a write.
    #[inline]
    fn put(&mut self, k: usize, dir: Dir, seg: Seg, now: u64, env: &mut Env) {
        let delay = (self.latency_nanos + env.rng.below(self.jitter_bound)).max(1);
        if let Some(at) = self.pipe(dir).put(seg, now + delay) {
            env.at_nanos(at, Ev::Arrive(k, dir));
        }
    }

    /// Its pipes' buffers, emptied (those it has).
    fn take_spares(&mut self) -> impl Iterator<Item = Spare> {
        [self.c2s.take_spare(), self.s2c.take_spare()]
            .into_iter()
            .flatten()
    }
}

/// What a server read found.
#[derive(Debug)]
pub enum Recv<'a> {
    /// Bytes (read from the socket's buffer in place).
    Data(&'a [u8]),
    /// No bytes left and the client's FIN arrived.
    Eof,
    /// A reset arrived.
    Reset,
    /// Nothing to read now.
    WouldBlock,
}

/// Connections counted by the kernel, for the run's summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetStats {
    /// Connections made (queued in the backlog).
    pub connections: u64,
    /// Connections refused (backlog full, or listener closed).
    pub refused: u64,
    /// Connections reset in the backlog when the listener closed.
    pub backlog_reset: u64,
    /// Connections a successor accepted from the listener handed to it.
    pub successor_accepted: u64,
}

/// The listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listener {
    /// Open; `armed` when a wake-up of the driver is already scheduled.
    Open {
        armed: bool,
    },
    Closed,
}

/// Who accepts from the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The server under test.
    Server,
    /// The successor it handed the listener to: the same socket, so the
    /// same backlog.
    Successor,
}

/// Every socket of the world, and the wire between them.
pub struct Kernel {
    conns: Vec<KConn>,
    backlog: VecDeque<usize>,
    listener: Listener,
    owner: Owner,
    notices: VecDeque<Notice>,
    /// Buffers of connections that are over, for new ones.
    spares: Vec<Spare>,
    capacity: usize,
    latency: (Duration, Duration),
    mss: usize,
    pipe_bytes: usize,
    accept_delay: Duration,
    stats: NetStats,
}

impl Kernel {
    /// A kernel with an open listener, shaped by `knobs`.
    pub fn new(knobs: &Knobs) -> Kernel {
        Kernel {
            conns: Vec::new(),
            backlog: VecDeque::new(),
            listener: Listener::Open { armed: false },
            owner: Owner::Server,
            notices: VecDeque::new(),
            spares: SPARES.take(),
            capacity: knobs.backlog,
            latency: knobs.latency,
            mss: knobs.mss,
            pipe_bytes: knobs.pipe_bytes,
            accept_delay: knobs.accept_delay,
            stats: NetStats::default(),
        }
    }

    /// What the kernel counted.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// The next thing an endpoint must be told, if any.
    pub fn pop_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }

    /// The client that made connection `k`.
    pub fn client_of(&self, k: usize) -> usize {
        self.conns[k].client
    }

    // The listener.

    /// A client connects: `None` when refused (backlog full or listener
    /// closed), else the new connection, queued in the backlog.
    pub fn connect(&mut self, client: usize, env: &mut Env) -> Option<usize> {
        let Listener::Open { armed } = self.listener else {
            return self.refuse(client, env);
        };
        if self.backlog.len() >= self.capacity {
            return self.refuse(client, env);
        }
        let (lo, hi) = self.latency;
        let latency = lo + env.rng.upto(hi - lo);
        let k = self.conns.len();
        let latency_nanos = latency.as_nanos() as u64;
        let (c2s, s2c) = (self.new_pipe(), self.new_pipe());
        self.conns.push(KConn {
            client,
            latency_nanos,
            jitter_bound: latency_nanos / 4 + 1,
            c2s,
            s2c,
            server: ServerEnd::Queued,
            client_end: ClientEnd::Open,
        });
        self.stats.connections += 1;
        self.backlog.push_back(k);
        trace!(env, "net connect k{k} client {client} latency {latency:?}");
        if !armed {
            self.listener = Listener::Open { armed: true };
            let d = env.rng.upto(self.accept_delay);
            env.after(d, Ev::AcceptReady);
        }
        Some(k)
    }

    /// A pipe for a new connection, on spare buffers if there are any.
    fn new_pipe(&mut self) -> Pipe {
        Pipe::with(self.spares.pop().unwrap_or_default())
    }

    /// Once both ends of `k` are closed and nothing is on the wire either
    /// way, none of its bytes will be read or sent again: its buffers are
    /// kept for a later connection.
    #[inline]
    fn retire_if_over(&mut self, k: usize) {
        let c = &mut self.conns[k];
        if c.server == ServerEnd::Closed
            && c.client_closed()
            && c.c2s.wire.is_empty()
            && c.s2c.wire.is_empty()
        {
            self.retire(k);
        }
    }

    /// Connection `k` is over: its buffers are kept for a later one.
    #[cold]
    fn retire(&mut self, k: usize) {
        self.spares.extend(self.conns[k].take_spares());
    }

    fn refuse(&mut self, client: usize, env: &mut Env) -> Option<usize> {
        self.stats.refused += 1;
        trace!(env, "net refuse client {client}");
        None
    }

    /// The scheduled wake-up of the listener fired: whether the driver
    /// should accept (the listener is still open).
    pub fn listener_woke(&mut self) -> bool {
        match self.listener {
            Listener::Open { .. } => {
                self.listener = Listener::Open { armed: false };
                true
            }
            Listener::Closed => false,
        }
    }

    /// `accept`: the oldest queued connection, if any.
    pub fn accept(&mut self) -> Option<usize> {
        let k = self.backlog.pop_front()?;
        self.conns[k].server = ServerEnd::Open;
        Some(k)
    }

    /// Closes the listener: what is still queued is reset. Returns those
    /// connections.
    pub fn close_listener(&mut self, env: &mut Env) -> Vec<usize> {
        self.listener = Listener::Closed;
        let queued: Vec<usize> = self.backlog.drain(..).collect();
        for &k in &queued {
            trace!(env, "net k{k} reset in backlog");
            self.conns[k].server = ServerEnd::Closed;
            self.stats.backlog_reset += 1;
            self.send_reset(k, Dir::S2c, env);
        }
        queued
    }

    /// Whether the listener is open.
    pub fn listener_open(&self) -> bool {
        matches!(self.listener, Listener::Open { .. })
    }

    /// Who accepts from the listener.
    pub fn owner(&self) -> Owner {
        self.owner
    }

    /// The server handed the listening socket to a successor and closed its
    /// own copy: the socket stays open, its backlog intact, and the
    /// successor accepts from it from now on.
    pub fn hand_off_listener(&mut self, env: &mut Env) {
        self.owner = Owner::Successor;
        if let Listener::Open { armed: false } = self.listener {
            if !self.backlog.is_empty() {
                self.listener = Listener::Open { armed: true };
                let d = env.rng.upto(self.accept_delay);
                env.after(d, Ev::AcceptReady);
            }
        }
    }

    /// Counts a connection the successor accepted.
    pub fn successor_accepted(&mut self) {
        self.stats.successor_accepted += 1;
    }

    // The wire.

    fn push(&mut self, k: usize, dir: Dir, seg: Seg, env: &mut Env) {
        self.conns[k].put(k, dir, seg, env.now.as_nanos(), env);
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
        let room = self.pipe_bytes.saturating_sub(pipe.held());
        if room < want && room < self.pipe_bytes / 4 {
            0
        } else {
            room
        }
    }

    /// The writer of `dir` found no room: tell it when there is.
    pub fn wait_for_room(&mut self, k: usize, dir: Dir) {
        self.conns[k].pipe(dir).writer_waits = true;
    }

    /// Bytes of `dir` left the buffer: a waiting writer may write again.
    fn freed(&mut self, k: usize, dir: Dir) {
        if std::mem::take(&mut self.conns[k].pipe(dir).writer_waits) {
            self.tell_writable(k, dir);
        }
    }

    /// Tells the waiting writer of `dir` that it may write again: out of
    /// line, as few reads free a waiting writer, so that the many reads
    /// need not make room for it.
    #[cold]
    fn tell_writable(&mut self, k: usize, dir: Dir) {
        self.notices.push_back(match dir {
            Dir::C2s => Notice::ClientWritable(self.conns[k].client, k),
            Dir::S2c => Notice::ServerWritable(k),
        });
    }

    /// Puts one write's bytes on the wire, cut into segments of at most
    /// `mss` — but at most about 8 segments per write, so a tiny `mss` stays
    /// affordable. The write comes in `parts` (the two halves of a ring
    /// buffer, say), so a writer need not gather them first.
    pub fn send(&mut self, k: usize, dir: Dir, parts: &[&[u8]], env: &mut Env) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let c = &mut self.conns[k];
        c.pipe(dir).send(parts, len);
        let now = env.now.as_nanos();
        let floor = len / 8;
        let mut left = len;
        while left > 0 {
            let n = env.rng.size(1, self.mss).max(floor).min(left);
            c.put(k, dir, Seg::Data(n), now, env);
            left -= n;
        }
    }

    /// A socket resets its peer (once).
    fn send_reset(&mut self, k: usize, dir: Dir, env: &mut Env) {
        let pipe = self.conns[k].pipe(dir);
        if !std::mem::replace(&mut pipe.rst_sent, true) {
            self.push(k, dir, Seg::Rst, env);
        }
    }

    /// The next segment of a direction arrives. Returns, when data reached
    /// the server's socket, how many bytes have reached it in all.
    pub fn arrive(&mut self, k: usize, dir: Dir, env: &mut Env) -> Option<u64> {
        let pipe = self.conns[k].pipe(dir);
        let (_, seg) = pipe.wire.pop_front()?;
        let total = match dir {
            Dir::C2s => {
                let data = matches!(seg, Seg::Data(_));
                self.arrive_at_server(k, seg, env);
                let pipe = &self.conns[k].c2s;
                (data && !pipe.rst && self.conns[k].server != ServerEnd::Closed)
                    .then_some(pipe.delivered)
            }
            Dir::S2c => {
                self.arrive_at_client(k, seg, env);
                None
            }
        };
        self.retire_if_over(k);
        total
    }

    fn arrive_at_server(&mut self, k: usize, seg: Seg, env: &mut Env) {
        let c = &mut self.conns[k];
        let closed = c.server == ServerEnd::Closed;
        // Queued connections take data too; the driver reads it once accepted.
        let accepted = matches!(c.server, ServerEnd::Open | ServerEnd::WriteShut);
        match seg {
            Seg::Data(n) => {
                trace!(env, "net k{k} c2s data {n}");
                if closed {
                    c.c2s.drop_arriving(n);
                    self.freed(k, Dir::C2s);
                    self.send_reset(k, Dir::S2c, env);
                    return;
                }
                c.c2s.deliver(n);
            }
            Seg::Fin => {
                trace!(env, "net k{k} c2s fin");
                if closed {
                    return;
                }
                c.c2s.fin = true;
            }
            Seg::Rst => {
                trace!(env, "net k{k} c2s rst");
                if closed {
                    return;
                }
                c.c2s.rst = true;
                c.c2s.destroy_unread();
                self.freed(k, Dir::C2s);
                if accepted {
                    self.notices.push_back(Notice::ServerReset(k));
                }
                return;
            }
        }
        if accepted {
            self.notices.push_back(Notice::ServerReadable(k));
        }
    }

    fn arrive_at_client(&mut self, k: usize, seg: Seg, env: &mut Env) {
        let c = &mut self.conns[k];
        let client = c.client;
        match seg {
            Seg::Data(n) => {
                trace!(env, "net k{k} s2c data {n}");
                if c.client_closed() {
                    // The dropped bytes no longer fill the server's buffer.
                    c.s2c.drop_arriving(n);
                    self.freed(k, Dir::S2c);
                    self.send_reset(k, Dir::C2s, env);
                    return;
                }
                c.s2c.deliver(n);
                self.notices.push_back(Notice::ClientReadable(client, k));
            }
            Seg::Fin => {
                trace!(env, "net k{k} s2c fin");
                if c.client_closed() {
                    return;
                }
                c.s2c.fin = true;
                self.notices.push_back(Notice::ClientReadable(client, k));
            }
            Seg::Rst => {
                if c.client_closed() {
                    trace!(env, "net k{k} s2c rst (client closed)");
                    return;
                }
                let destroyed = c.s2c.destroy_unread();
                c.s2c.rst = true;
                c.client_end = ClientEnd::Closed;
                trace!(env, "net k{k} s2c rst destroys {destroyed} unread bytes");
                self.notices
                    .push_back(Notice::ClientReset(client, k, destroyed));
                self.freed(k, Dir::S2c);
            }
        }
    }

    // The server's socket of a connection.

    /// The state of the server's end of `k`.
    pub fn server_end(&self, k: usize) -> ServerEnd {
        self.conns[k].server
    }

    /// A read of at most `max` bytes on the server's socket (inlined: the
    /// driver reads in many small pieces, and a call costs as much as the
    /// read).
    #[inline]
    pub fn server_recv(&mut self, k: usize, max: usize) -> Recv<'_> {
        let pipe = &mut self.conns[k].c2s;
        if pipe.rst {
            return Recv::Reset;
        }
        if pipe.unread == 0 {
            return if pipe.fin {
                Recv::Eof
            } else {
                Recv::WouldBlock
            };
        }
        let range = pipe.read(pipe.unread.min(max));
        self.freed(k, Dir::C2s);
        Recv::Data(&self.conns[k].c2s.bytes[range])
    }

    /// Bytes that reached the server's socket and were not read.
    pub fn server_unread(&self, k: usize) -> usize {
        self.conns[k].c2s.unread
    }

    /// Whether the client's FIN reached the server's socket.
    pub fn server_got_fin(&self, k: usize) -> bool {
        self.conns[k].c2s.fin
    }

    /// `shutdown(SHUT_WR)` on the server's socket.
    pub fn server_half_close(&mut self, k: usize, env: &mut Env) {
        if self.conns[k].server != ServerEnd::Open {
            return;
        }
        self.conns[k].server = ServerEnd::WriteShut;
        self.push(k, Dir::S2c, Seg::Fin, env);
    }

    /// Reads and drops what the server's socket holds, as a driver does
    /// before a forced close so that the close sends FIN, not a reset that
    /// could destroy a farewell.
    pub fn server_discard(&mut self, k: usize) {
        if self.conns[k].c2s.destroy_unread() > 0 {
            self.freed(k, Dir::C2s);
        }
    }

    /// `close` on the server's socket: a reset if input is unread, else FIN.
    pub fn server_close(&mut self, k: usize, env: &mut Env) {
        let c = &mut self.conns[k];
        let was = std::mem::replace(&mut c.server, ServerEnd::Closed);
        let unread = c.c2s.destroy_unread();
        trace!(env, "net k{k} server close, {unread} bytes unread");
        if unread > 0 {
            self.freed(k, Dir::C2s);
            self.send_reset(k, Dir::S2c, env);
        } else if was != ServerEnd::WriteShut {
            self.push(k, Dir::S2c, Seg::Fin, env);
        }
        self.retire_if_over(k);
    }

    /// A queued connection whose accept found the process gone: its socket
    /// dies with the process, and the client gets a reset.
    pub fn reset_accepted(&mut self, k: usize, env: &mut Env) {
        self.conns[k].server = ServerEnd::Closed;
        self.send_reset(k, Dir::S2c, env);
        self.retire_if_over(k);
    }

    // The client's socket of a connection.

    /// Bytes that reached the client's socket and were not read.
    pub fn client_unread(&self, k: usize) -> usize {
        self.conns[k].s2c.unread
    }

    /// Reads `n` bytes (at most what is unread) on the client's socket
    /// (in place, like [`Kernel::server_recv`]).
    pub fn client_recv(&mut self, k: usize, n: usize) -> &[u8] {
        let pipe = &mut self.conns[k].s2c;
        let range = pipe.read(n.min(pipe.unread));
        self.freed(k, Dir::S2c);
        &self.conns[k].s2c.bytes[range]
    }

    /// Whether the server's FIN reached the client's socket.
    pub fn client_got_fin(&self, k: usize) -> bool {
        self.conns[k].s2c.fin
    }

    /// Whether the client's socket is closed (by the client, or by a reset).
    pub fn client_closed(&self, k: usize) -> bool {
        self.conns[k].client_closed()
    }

    /// Whether the client aborted connection `k`.
    pub fn client_aborted(&self, k: usize) -> bool {
        self.conns[k].client_end == ClientEnd::Aborted
    }

    /// Whether the client may still send on `k` (open and not shut down).
    pub fn client_can_send(&self, k: usize) -> bool {
        self.conns[k].client_end == ClientEnd::Open
    }

    /// The client closes its socket: a reset if it left bytes unread, else FIN.
    pub fn client_close(&mut self, k: usize, env: &mut Env) {
        let c = &mut self.conns[k];
        if c.client_closed() {
            return;
        }
        let was = std::mem::replace(&mut c.client_end, ClientEnd::Closed);
        if c.s2c.destroy_unread() > 0 {
            self.freed(k, Dir::S2c);
            self.send_reset(k, Dir::C2s, env);
        } else if was == ClientEnd::Open {
            self.push(k, Dir::C2s, Seg::Fin, env);
        }
        self.retire_if_over(k);
    }

    /// The client aborts (`SO_LINGER` 0, then close): a reset.
    pub fn client_abort(&mut self, k: usize, env: &mut Env) {
        let c = &mut self.conns[k];
        c.client_end = ClientEnd::Aborted;
        c.s2c.destroy_unread();
        self.freed(k, Dir::S2c);
        self.send_reset(k, Dir::C2s, env);
        self.retire_if_over(k);
    }

    /// `shutdown(SHUT_WR)` on the client's socket.
    pub fn client_shutdown(&mut self, k: usize, env: &mut Env) {
        if self.conns[k].client_end == ClientEnd::Open {
            self.conns[k].client_end = ClientEnd::WriteShut;
            self.push(k, Dir::C2s, Seg::Fin, env);
        }
    }
}

impl Drop for Kernel {
    /// Every buffer goes back to the thread's spares, for its next world;
    /// the thread keeps the largest.
    fn drop(&mut self) {
        let mut spares = std::mem::take(&mut self.spares);
        for c in &mut self.conns {
            spares.extend(c.take_spares());
        }
        SPARES.with_borrow_mut(|kept| {
            kept.append(&mut spares);
            // The largest are the dearest to grow again.
            kept.sort_unstable_by_key(|s| std::cmp::Reverse(s.bytes.capacity()));
            kept.truncate(KEPT_SPARES);
        });
    }
}
