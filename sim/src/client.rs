//! Clients: small state machines that write real HTTP/1.1 bytes, parse the
//! responses, and behave like the clients a server meets — well, slowly,
//! rudely, or not at all. A request is retried (on a new connection, a
//! bounded number of times) only when no byte of its response arrived
//! (RFC 9112 §9.3.1).
//!
//! Every request a client writes is entered in the checker's ledger with
//! the position of its last byte in the connection's byte stream, and every
//! final response it reads is reported there, so the checker can tell which
//! requests reached the server whole and what became of each (S7).
//!
//! A client's life is a [`Life`]: waiting to (re)connect, on a connection —
//! where its [`Turn`] says whether it may send, waits for `100 Continue`,
//! thinks between keep-alive requests, or waits for the server to close —
//! and done.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::check::Checker;
use crate::env::{Env, Ev};
use crate::failure::Failure;
use crate::kernel::{Dir, Kernel};
use crate::knobs::Knobs;
use crate::request::{self, is_farewell, token_of, Shape};
use crate::trace;
use ebb_testkit::response::{Framing, Response, ResponseParser};
use ebb_testkit::rng::Rng;

/// The kinds of client; each seed weighs them differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One to four requests, one at a time.
    Normal,
    /// Two to eight requests written at once (more in some seeds: see
    /// `Knobs::pipeline_depth`); a fifth of them ask to close mid-batch and
    /// send the rest all the same (`Client::rude`).
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
    /// Empty lines (`\r\n`), slowly, before a request or instead of one:
    /// they start the head clock, so 408 at the header timeout is expected
    /// when the request does not follow in time.
    CrlfTrickler,
    /// A body sent slower than `min_body_rate_bytes_per_sec` (408 expected
    /// when a minimum rate is set).
    BodyTrickler,
    /// A head with a `Content-Length` body, then part of the body (some of
    /// it, or none), then nothing more: it waits, reading, for the 408 of
    /// the body timeout.
    BodyStopper,
    /// Keep-alive requests sent at moments chosen to race the server: the
    /// drain's start, the idle close, the keep-alive timeout.
    Racing,
    /// Asks for large responses and does not read for a while, up to twice
    /// `write_stall_timeout`: the server's writes stall.
    Stalling,
    /// Asks for large streamed responses and reads them slowly, a little
    /// at a time (the producer meets back-pressure); some abort mid-stream.
    SlowReader,
    /// Asks to upgrade to `echo` (some send their first message with the
    /// request), then sends messages and checks each comes back; some keep
    /// on until the server ends the connection.
    Upgrading,
}

impl Kind {
    pub const ALL: [Kind; 17] = [
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
        Kind::CrlfTrickler,
        Kind::BodyTrickler,
        Kind::BodyStopper,
        Kind::Racing,
        Kind::Stalling,
        Kind::SlowReader,
        Kind::Upgrading,
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
    /// Its complete answer arrived: the application's, or core's 500 for an
    /// attempt the application failed.
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
    /// Only empty lines: 408 at the header timeout.
    HeadTimeout,
    /// A body slower than the minimum rate: 408, never an answer.
    TooSlow,
    /// A body stopped short: 408 at the body timeout, never an answer
    /// (but, for a body that streams, the application's before it read it).
    BodyTimeout,
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
    got_byte: bool,
    /// The attempt the application failed (core answers it with 500).
    fault_attempt: Option<u32>,
    /// Empty lines (`\r\n` pairs) sent slowly before the request.
    crlf: usize,
}

impl Req {
    /// Whether the current attempt was completed by core's 500 for an
    /// application fault.
    pub fn completed_by_fault(&self) -> bool {
        self.fate == Fate::Complete && self.fault_attempt == Some(self.attempt)
    }
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
    /// An upgraded client sends its next message.
    Echo,
    /// A silent client gives up.
    SilentEnd,
    /// The 408 for a body stopped short is due by now.
    BodyTimeoutDue,
}

/// Where a client is in its life.
#[derive(Debug)]
pub enum Life {
    /// Not connected; a (re)connect is scheduled.
    Waiting,
    /// On a connection (boxed: a client waiting or done stays small).
    Connected(Box<Link>),
    /// Every request resolved, or the client gave up or aborted.
    Done,
}

/// What a connected client may do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// Writes requests, up to its pipelining depth.
    Sending,
    /// Sent a head with `Expect: 100-continue`; holds its body until `100`
    /// (or a timer).
    AwaitingContinue(Vec<u8>),
    /// Keep-alive think time between requests.
    Thinking,
    /// A response said `Connection: close`: sends nothing more, waits for
    /// the server to close.
    Closing,
    /// Upgraded to `echo`: sends messages, and reads each back.
    Echoing,
}

/// A client's connection.
#[derive(Debug)]
pub struct Link {
    pub k: usize,
    turn: Turn,
    /// Bytes written by the client, not yet accepted by the socket.
    outbox: VecDeque<u8>,
    /// Requests sent on this connection and not yet answered, oldest first.
    inflight: VecDeque<usize>,
    parser: ResponseParser,
    /// A delayed read is scheduled.
    read_armed: bool,
    /// A slowloris's next write is scheduled.
    flush_armed: bool,
    /// Bytes queued on this connection in all (the stream position after
    /// the outbox).
    queued: u64,
    /// The stream positions `[from, to)` written at the client's pace, a
    /// few bytes at a time; the rest go as fast as the socket takes them.
    paced: (u64, u64),
    /// When the first byte of an empty-lines-only request was written.
    crlf_since: Option<ebb_core::Time>,
    /// A request's body was cut short in the outbox: once the outbox is
    /// empty, the 408 of the body timeout is awaited.
    body_stopped: bool,
    /// Bytes sent on an upgraded connection whose echo has not come back.
    echo_owed: VecDeque<u8>,
}

impl Link {
    /// The stream position of the next byte to write.
    fn written(&self) -> u64 {
        self.queued - self.outbox.len() as u64
    }
}

/// One client: its script, how it behaves, and where it is.
#[derive(Debug)]
pub struct Client {
    id: usize,
    kind: Kind,
    reqs: Vec<Req>,
    life: Life,
    depth: usize,
    pace: Option<(Duration, usize)>,
    abort: Option<AbortAt>,
    abort_within: Duration,
    half_close: bool,
    silent_for: Duration,
    read_delay: Duration,
    read_chunk: usize,
    think: Duration,
    conns_left: u32,
    retries_left: u32,
    /// A pipelining client that breaks RFC 9112 §9.6: it asks to close in
    /// the middle of its batch and sends the rest behind that request all
    /// the same. Core must not hand those over (nor answer them); they go
    /// again on a new connection. Its own close may reset what it sent
    /// behind, and with it the answer it has not read yet: its fault.
    rude: bool,
    /// For a racing client: the moments worth racing (the drain's start,
    /// and how long the server keeps an idle connection while draining and
    /// while serving), and the slack around them.
    race: Option<Race>,
    /// How long a stalling client leaves what arrives unread, from its
    /// first connect.
    stall: Duration,
    /// Until when it leaves it unread, on its present connection.
    stall_until: ebb_core::Time,
    /// Longest time between the first empty line and the 408 for it:
    /// the header timeout, then an accept delay, latency both ways and the
    /// server's and the client's read delays.
    head_timeout_bound: (Duration, Duration),
    /// Longest time between the last byte of a body stopped short and the
    /// 408 for it: the same, with the body timeout.
    body_timeout_by: Duration,
    /// An upgrading client's plan.
    echo: Option<EchoPlan>,
    /// Request bodies stream (`stream_request_bodies`).
    streams_bodies: bool,
    cover: ClientCover,
}

/// What an upgrading client sends once upgraded.
#[derive(Clone, Copy, Debug)]
struct EchoPlan {
    /// Messages sent so far, and in all (an endless client sends until
    /// `until`).
    sent: usize,
    messages: usize,
    until: Option<ebb_core::Time>,
    /// Sends its first message with the request.
    early: bool,
    len: usize,
    think: Duration,
}

/// What the clients met, for the runner's coverage counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientCover {
    /// 408s read by clients that sent empty lines slowly.
    pub crlf_408: u64,
    /// 408s read by clients that sent their body slowly.
    pub slow_body_408: u64,
    /// 408s read by clients that stopped sending their body partway.
    pub body_stopped_408: u64,
    /// Racing clients' requests answered after the drain began.
    pub racing_in_drain: u64,
    /// Streamed responses read whole, their bytes as produced.
    pub streams_read: u64,
    /// Echo messages that came back intact on an upgraded connection.
    pub echoes_read: u64,
    /// Requests rude clients sent behind one that asked to close.
    pub sent_past_close: u64,
}

/// What a racing client aims at.
#[derive(Clone, Copy, Debug)]
struct Race {
    drain_at: Duration,
    idle_close_after: Duration,
    keep_alive_timeout: Duration,
    slack: Duration,
}

/// What the response parser made of one read.
struct Parsed {
    /// The responses it completed.
    responses: Vec<Response>,
    /// Bytes after a `101`: the new protocol's (rarely any).
    upgraded: Vec<u8>,
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
        big_response: false,
        big_stream: false,
        upgrade: false,
    }
}

/// The pace of a body trickler: `(interval, bytes per write)` well under
/// `min` bytes per second (or, with no minimum, merely slow), the length of
/// its body, and whether it is long enough that core must refuse it.
fn trickle(rng: &mut Rng, knobs: &Knobs) -> (Duration, usize, usize, bool) {
    let c = &knobs.config;
    let max_body = c.max_body_bytes as usize;
    let rate = c.min_body_rate_bytes_per_sec;
    if rate == 0 {
        // Merely slow: some 20 writes, each well within the body timeout.
        let len = rng.size(20, 200).min(max_body);
        let most = (c.body_read_timeout.as_micros() as u64 / 2).min(100_000);
        return (
            rng.micros(1_000, most.max(1_001)),
            (len / 20).max(1),
            len,
            false,
        );
    }
    // Core refuses once the bytes so far, head included, fall below
    // (elapsed - grace) * rate. Sent at an eighth to a quarter of the rate,
    // a body is refused before it ends if it is longer than a third of
    // (head + grace * rate); twice that leaves room for latency and an
    // accept that comes late.
    let need = (HEAD_BYTES + c.body_rate_grace.as_secs_f64() * rate as f64) as usize * 2 / 3 + 50;
    let len = (need + rng.size(0, 100)).min(max_body);
    let chunk = (len / 100).max(1);
    let lo = chunk as u64 * 4_000_000 / rate;
    let every = rng.micros(lo.max(1), lo * 2 + 1);
    (every, chunk, len, len >= need)
}

/// A streamed response, as its client reads it: exactly the bytes the
/// producer made for `token`, in order; all it announced (`x-stream`),
/// unless its body ends with the connection and a close that may cut
/// (`cut`: a forced exit, a stalled write) cut it short.
fn check_stream(token: &str, resp: &Response, cut: bool) -> Result<(), String> {
    let Some(total) = resp.header("x-stream") else {
        return Ok(());
    };
    let total: usize = total
        .parse()
        .map_err(|_| format!("x-stream {total:?} is not a length"))?;
    if resp.framing == Framing::Bodiless {
        return Ok(());
    }
    if !request::is_stream_prefix(token, &resp.body) {
        return Err(format!(
            "the streamed body of {token} is not the bytes produced ({} bytes)",
            resp.body_len
        ));
    }
    let short_ok = resp.framing == Framing::UntilClose && cut;
    if resp.body_len > total || (resp.body_len < total && !short_ok) {
        return Err(format!(
            "the streamed body of {token} has {} bytes of {total}, framed {:?} (cut by its close: {cut})",
            resp.body_len, resp.framing
        ));
    }
    Ok(())
}

/// Whether `queue` begins with `bytes`: compared a slice at a time (a
/// byte at a time through the queue's iterator costs several times more).
fn starts_with(queue: &VecDeque<u8>, bytes: &[u8]) -> bool {
    let (a, b) = queue.as_slices();
    let n = a.len().min(bytes.len());
    a[..n] == bytes[..n] && b.get(..bytes.len() - n) == Some(&bytes[n..])
}

/// More than the head of a body trickler's request.
const HEAD_BYTES: f64 = 80.0;

impl Client {
    /// Client `id` of `kind`, its script drawn from `rng`.
    pub fn new(id: usize, kind: Kind, rng: &mut Rng, knobs: &Knobs) -> Client {
        let max_body = knobs.config.max_body_bytes as usize;
        let count = match kind {
            Kind::Normal | Kind::Aborting => rng.size(1, 4),
            Kind::Pipelined => rng.size(2, knobs.pipeline_depth),
            Kind::KeepAlive => rng.size(2, 5),
            Kind::Slowloris | Kind::HalfClosing => rng.size(1, 3),
            Kind::Silent => 0,
            Kind::LargeBody | Kind::ExpectContinue => 1,
            Kind::CrlfTrickler => 1,
            // Some send a request first, so the slow or bad one is not
            // the connection's first.
            Kind::BodyTrickler | Kind::BodyStopper | Kind::Garbage => rng.size(1, 2),
            Kind::Racing => rng.size(2, 6),
            Kind::Stalling => rng.size(1, 3),
            Kind::SlowReader => rng.size(1, 2),
            Kind::Upgrading => 1,
        };
        let trickle = (kind == Kind::BodyTrickler).then(|| trickle(rng, knobs));
        // A CRLF trickler sends only empty lines in some clients.
        let crlf_only = kind == Kind::CrlfTrickler && rng.percent(40);
        let mut reqs: Vec<Req> = (0..count)
            .map(|i| {
                let trickled = kind == Kind::BodyTrickler && i + 1 == count;
                let stopped = kind == Kind::BodyStopper && i + 1 == count;
                let garbage = kind == Kind::Garbage && i + 1 == count;
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
                    // A body with a length, under the smallest stream
                    // buffer: an application that reads it never holds it
                    // back (its body timeout runs all along).
                    Kind::BodyStopper if stopped => {
                        shape.body_len = shape.body_len.max(rng.size(1, 300));
                        shape.chunks = None;
                    }
                    Kind::Garbage => {
                        shape.http10 = false;
                        shape.close = false;
                    }
                    Kind::Stalling => shape.big_response = true,
                    Kind::SlowReader => shape.big_stream = true,
                    Kind::Upgrading => {
                        shape = Shape {
                            body_len: 0,
                            chunks: None,
                            expect_continue: false,
                            close: false,
                            http10: false,
                            big_response: false,
                            big_stream: false,
                            upgrade: true,
                        }
                    }
                    Kind::BodyTrickler => {
                        if trickled {
                            shape.body_len = trickle.map_or(1, |t| t.2);
                            shape.chunks = None;
                        }
                        shape.http10 = false;
                        shape.close = false;
                    }
                    _ => {}
                }
                let expect = match kind {
                    Kind::Garbage if garbage => Expect::Reject,
                    Kind::CrlfTrickler if crlf_only => Expect::HeadTimeout,
                    Kind::BodyTrickler if trickled && trickle.is_some_and(|t| t.3) => {
                        Expect::TooSlow
                    }
                    Kind::BodyStopper if stopped => Expect::BodyTimeout,
                    _ if shape.body_len > max_body => Expect::TooLarge,
                    _ => Expect::Answer,
                };
                Req {
                    shape,
                    garbage,
                    expect,
                    fate: Fate::Unsent,
                    attempt: 0,
                    raw_len: 0,
                    got_byte: false,
                    fault_attempt: None,
                    crlf: if kind == Kind::CrlfTrickler {
                        rng.size(1, 30)
                    } else {
                        0
                    },
                }
            })
            .collect();
        if let Some(last) = reqs.last_mut() {
            last.shape.close |= kind == Kind::Normal && rng.percent(20);
        }
        let rude = kind == Kind::Pipelined && rng.percent(20);
        if rude {
            let at = rng.below(count as u64 - 1) as usize;
            reqs[at].shape.close = true;
        }
        let abort = match kind {
            Kind::Aborting => Some(match rng.below(4) {
                0 => AbortAt::MidHead,
                1 => AbortAt::MidBody,
                2 => AbortAt::AfterRequest,
                _ => AbortAt::MidResponse,
            }),
            Kind::SlowReader if rng.percent(30) => Some(AbortAt::MidResponse),
            _ => None,
        };
        let header = knobs.config.header_read_timeout;
        let pace = match kind {
            Kind::Slowloris => {
                let per = header.as_micros() as u64 / 10;
                Some((rng.micros(100, per.max(200)), rng.size(1, 4)))
            }
            // One empty line per write; some finish well within the
            // header timeout, some do not.
            Kind::CrlfTrickler => Some((header / rng.range(2, 60) as u32, 2)),
            Kind::BodyTrickler => trickle.map(|(every, chunk, ..)| (every, chunk)),
            _ => None,
        };
        let c = &knobs.config;
        let race = (kind == Kind::Racing).then(|| Race {
            drain_at: knobs.terminate_at + c.pre_stop,
            idle_close_after: c.idle_close_after,
            keep_alive_timeout: c.keep_alive_timeout,
            slack: knobs.latency.1 * 3,
        });
        // From a timeout's start to its 408 read: an accept that comes
        // late, latency both ways, the server's read and the client's
        // delayed.
        let one_way = knobs.latency.1 + knobs.latency.1 / 4;
        let slack = knobs.accept_delay
            + one_way * 2
            + Duration::from_millis(1)
            + knobs.read_lag
            + knobs.client_read_delay;
        Client {
            id,
            kind,
            depth: match kind {
                Kind::Pipelined | Kind::HalfClosing => count,
                _ => 1,
            },
            reqs,
            life: Life::Waiting,
            pace,
            abort,
            abort_within: knobs.latency.1 * 4 + Duration::from_millis(10),
            half_close: kind == Kind::HalfClosing,
            silent_for: rng.upto(knobs.config.keep_alive_timeout * 2),
            // Slow, but done within the liveness bound even for 512 KiB.
            read_delay: if kind == Kind::SlowReader {
                rng.micros(1_000, 20_000)
            } else {
                rng.upto(knobs.client_read_delay)
            },
            read_chunk: if abort == Some(AbortAt::MidResponse) {
                rng.size(1, 64)
            } else if kind == Kind::SlowReader {
                rng.log(1024, 8192) as usize
            } else {
                rng.log(512, 64 * 1024) as usize
            },
            think: knobs.think,
            conns_left: count as u32 + 3,
            retries_left: 3,
            rude,
            race,
            // Well within the liveness bound (60 s past the deadline).
            stall: if kind == Kind::Stalling {
                rng.upto((knobs.config.write_stall_timeout * 2).min(Duration::from_secs(20)))
            } else {
                Duration::ZERO
            },
            stall_until: ebb_core::Time::ZERO,
            head_timeout_bound: (header, header + slack),
            body_timeout_by: c.body_read_timeout + slack,
            echo: (kind == Kind::Upgrading).then(|| EchoPlan {
                sent: 0,
                messages: rng.size(1, 6),
                // Past the drain's deadline: the server ends it first.
                until: rng.percent(30).then(|| {
                    ebb_core::Time::from_duration(
                        knobs.terminate_at + c.pre_stop + c.drain_timeout + Duration::from_secs(1),
                    )
                }),
                early: rng.percent(50),
                len: rng.size(1, 300),
                // Not too chatty: an endless client talks for seconds.
                think: rng.micros(20_000, 300_000),
            }),
            streams_bodies: c.stream_request_bodies,
            cover: ClientCover::default(),
        }
    }

    /// The client's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// How long a racing client thinks before its next request: until just
    /// before or after a moment when the server may close the connection.
    fn think_time(&self, env: &mut Env) -> Duration {
        let Some(r) = self.race else {
            return env.rng.upto(self.think);
        };
        let now = env.now.since_epoch();
        let jitter = |env: &mut Env, at: Duration| {
            let lo = at.saturating_sub(r.slack);
            (lo + env.rng.upto(r.slack * 2)).saturating_sub(now)
        };
        match env.rng.below(4) {
            0 if r.drain_at > now => jitter(env, r.drain_at),
            1 => jitter(env, now + r.keep_alive_timeout),
            2 => env.rng.upto(r.slack),
            _ => jitter(env, now + r.idle_close_after),
        }
    }

    /// Whether the client's life is over.
    pub fn is_done(&self) -> bool {
        matches!(self.life, Life::Done)
    }

    fn unresolved(&self) -> bool {
        self.reqs
            .iter()
            .any(|r| matches!(r.fate, Fate::Unsent | Fate::Sent))
    }

    /// The link to connection `k`, if the client is on it.
    fn link_to(&mut self, k: usize) -> Option<&mut Link> {
        match &mut self.life {
            Life::Connected(link) if link.k == k => Some(link),
            _ => None,
        }
    }

    fn on(&self, k: usize) -> bool {
        matches!(&self.life, Life::Connected(link) if link.k == k)
    }

    /// The client (re)connects and starts writing. Returns the connection
    /// it made, if the kernel did not refuse it.
    pub fn start(
        &mut self,
        kernel: &mut Kernel,
        checker: &mut Checker,
        env: &mut Env,
    ) -> Option<usize> {
        if matches!(self.life, Life::Done) {
            return None;
        }
        self.conns_left = self.conns_left.saturating_sub(1);
        let Some(k) = kernel.connect(self.id, env) else {
            self.reconnect_or_finish(kernel, env);
            return None;
        };
        self.life = Life::Connected(Box::new(Link {
            k,
            turn: Turn::Sending,
            outbox: VecDeque::new(),
            inflight: VecDeque::new(),
            // Only a streamed body is checked byte for byte; its length is
            // announced (a bad one fails the check, not the reading).
            parser: ResponseParser::keeping_bodies_of(|r| {
                r.header("x-stream").map(|total| total.parse().unwrap_or(0))
            }),
            read_armed: false,
            flush_armed: false,
            queued: 0,
            paced: if self.kind == Kind::Slowloris {
                (0, u64::MAX)
            } else {
                (0, 0)
            },
            crlf_since: None,
            body_stopped: false,
            echo_owed: VecDeque::new(),
        }));
        checker.on_connect(k);
        // Only its first connection stalls.
        self.stall_until = env.now + std::mem::take(&mut self.stall);
        trace!(env, "client {} {:?} on k{k}", self.id, self.kind);
        if self.kind == Kind::Silent {
            env.after(self.silent_for, Ev::ClientWake(self.id, k, Wake::SilentEnd));
        }
        self.fill(kernel, checker, env);
        self.flush(kernel, env);
        Some(k)
    }

    /// Queues as many requests as the client's pipelining depth allows, and
    /// enters each in the checker's ledger.
    fn fill(&mut self, kernel: &Kernel, checker: &mut Checker, env: &mut Env) {
        let ci = self.id;
        let Life::Connected(link) = &mut self.life else {
            return;
        };
        let k = link.k;
        if link.turn != Turn::Sending || !kernel.client_can_send(k) {
            return;
        }
        while link.inflight.len() < self.depth {
            // RFC 9112 §9.6: nothing more after a request that closes (a
            // rude client sends more all the same).
            if link.inflight.iter().any(|&i| self.reqs[i].shape.close) {
                if !self.rude {
                    break;
                }
                checker.on_sent_past_close(k);
                self.cover.sent_past_close += 1;
            }
            let Some(i) = self.reqs.iter().position(|r| r.fate == Fate::Unsent) else {
                break;
            };
            let last = i + 1 == self.reqs.len();
            let r = &mut self.reqs[i];
            let tok = request::token(ci, i, r.attempt);
            let crlf_only = r.expect == Expect::HeadTimeout;
            let (head, body) = if crlf_only {
                (Vec::new(), Vec::new())
            } else if r.garbage {
                let mut g = vec![1u8];
                let n = env.rng.size(0, 100);
                g.extend((0..n).map(|_| b' ' + env.rng.below(95) as u8));
                g.extend_from_slice(b"\r\n\r\n");
                (g, Vec::new())
            } else {
                request::request(&tok, i, r.shape)
            };
            // Empty lines first: they belong to the request (core drops
            // them as it reads its head).
            let crlf = 2 * r.crlf;
            r.raw_len = crlf + head.len() + body.len();
            r.fate = Fate::Sent;
            r.got_byte = false;
            link.inflight.push_back(i);
            trace!(env, "client {ci} sends {tok} ({} bytes)", r.raw_len);
            let start = link.queued;
            // A request of empty lines only never ends.
            let end = if crlf_only {
                u64::MAX
            } else {
                start + r.raw_len as u64
            };
            checker.on_sent(k, i, r.attempt, end);
            link.queued += r.raw_len as u64;
            match self.kind {
                Kind::CrlfTrickler => {
                    link.paced = (start, start + crlf as u64);
                    link.crlf_since = crlf_only.then_some(env.now);
                    for _ in 0..r.crlf {
                        link.outbox.extend(b"\r\n");
                    }
                }
                Kind::BodyTrickler if last => {
                    let from = start + head.len() as u64;
                    link.paced = (from, from + body.len() as u64);
                }
                _ => {}
            }
            let plan = self.abort.filter(|a| *a != AbortAt::MidResponse);
            match plan {
                Some(AbortAt::MidHead) | Some(AbortAt::MidBody)
                    if body.is_empty() || plan == Some(AbortAt::MidHead) =>
                {
                    self.abort = None;
                    let cut = env.rng.size(1, head.len() - 1);
                    link.outbox.extend(&head[..cut]);
                    let d = env.rng.upto(self.abort_within);
                    env.after(d, Ev::ClientWake(ci, k, Wake::Abort));
                    break;
                }
                // Part of the body (none of it, at most all but its last
                // byte), then an abort, or nothing more.
                _ if plan == Some(AbortAt::MidBody) || r.expect == Expect::BodyTimeout => {
                    let cut = env.rng.size(0, body.len() - 1);
                    link.outbox.extend(&head);
                    link.outbox.extend(&body[..cut]);
                    if plan == Some(AbortAt::MidBody) {
                        self.abort = None;
                        let d = env.rng.upto(self.abort_within);
                        env.after(d, Ev::ClientWake(ci, k, Wake::Abort));
                    } else {
                        link.body_stopped = true;
                    }
                    break;
                }
                _ => {}
            }
            link.outbox.extend(&head);
            if r.shape.expect_continue && !body.is_empty() {
                link.turn = Turn::AwaitingContinue(body);
                let d = env.rng.micros(1_000, 1_000_000);
                env.after(d, Ev::ClientWake(ci, k, Wake::Continue));
                break;
            }
            link.outbox.extend(&body);
            // The new protocol's first bytes may follow the request at once.
            if let Some(echo) = self.echo.as_mut().filter(|e| r.shape.upgrade && e.early) {
                let msg = request::echo_message(ci, echo.sent, echo.len);
                echo.sent += 1;
                link.queued += msg.len() as u64;
                link.outbox.extend(&msg);
                link.echo_owed.extend(msg);
            }
            if plan == Some(AbortAt::AfterRequest) {
                self.abort = None;
                let d = env.rng.upto(self.abort_within);
                env.after(d, Ev::ClientWake(ci, k, Wake::Abort));
            }
        }
    }

    /// Writes queued bytes while there is room; bytes in the paced range a
    /// few at a time, one write per `Flush` wake.
    fn flush(&mut self, kernel: &mut Kernel, env: &mut Env) {
        let ci = self.id;
        let Life::Connected(link) = &mut self.life else {
            return;
        };
        let k = link.k;
        if kernel.client_closed(k) {
            return;
        }
        while !link.outbox.is_empty() {
            let room = kernel.room(k, Dir::C2s, link.outbox.len());
            if room == 0 {
                kernel.wait_for_room(k, Dir::C2s);
                return;
            }
            let mut n = link.outbox.len().min(room);
            let at = link.written();
            let (from, to) = link.paced;
            let paced = self.pace.filter(|_| from <= at && at < to);
            if let Some((_, chunk)) = paced {
                n = n.min(chunk).min((to - at).try_into().unwrap_or(usize::MAX));
            } else if at < from {
                // Up to the paced range at once; the range at its pace.
                n = n.min((from - at).try_into().unwrap_or(usize::MAX));
            }
            let (a, b) = link.outbox.as_slices();
            let a = &a[..a.len().min(n)];
            kernel.send(k, Dir::C2s, &[a, &b[..n - a.len()]], env);
            link.outbox.drain(..n);
            if let Some((every, _)) = paced {
                if !link.outbox.is_empty() {
                    if !link.flush_armed {
                        link.flush_armed = true;
                        env.after(every, Ev::ClientWake(ci, k, Wake::Flush));
                    }
                    return;
                }
            }
        }
        // The last byte of a body stopped short is written: the body
        // timeout runs from here.
        if std::mem::take(&mut link.body_stopped) {
            trace!(env, "client {ci} stops sending on k{k}");
            env.after(
                self.body_timeout_by,
                Ev::ClientWake(ci, k, Wake::BodyTimeoutDue),
            );
        }
        let all_sent = !self.reqs.iter().any(|r| r.fate == Fate::Unsent);
        let holding = matches!(link.turn, Turn::AwaitingContinue(_));
        if self.half_close && all_sent && !holding {
            trace!(env, "client {ci} shuts down its write half on k{k}");
            kernel.client_shutdown(k, env);
        }
    }

    /// The server read from `k`: a client that found no room may write again.
    pub fn writable(&mut self, k: usize, kernel: &mut Kernel, env: &mut Env) {
        if self.link_to(k).is_some_and(|link| !link.flush_armed) {
            self.flush(kernel, env);
        }
    }

    /// Bytes or FIN arrived on `k`: read now, or after the read delay.
    pub fn readable(
        &mut self,
        k: usize,
        kernel: &mut Kernel,
        checker: &mut Checker,
        env: &mut Env,
    ) {
        let ci = self.id;
        // Most clients never stall: no clock arithmetic for them.
        let delay = if env.now < self.stall_until {
            self.read_delay.max(self.stall_until - env.now)
        } else {
            self.read_delay
        };
        let Some(link) = self.link_to(k) else {
            return;
        };
        if delay.is_zero() {
            self.read(k, kernel, checker, env);
        } else if !link.read_armed {
            link.read_armed = true;
            env.after(delay, Ev::ClientRead(ci, k));
        }
    }

    /// The client reads what it can.
    pub fn read(&mut self, k: usize, kernel: &mut Kernel, checker: &mut Checker, env: &mut Env) {
        let ci = self.id;
        if let Some(link) = self.link_to(k) {
            link.read_armed = false;
        }
        if env.now < self.stall_until {
            return self.readable(k, kernel, checker, env);
        }
        loop {
            if !self.on(k) {
                return;
            }
            let n = kernel.client_unread(k).min(self.read_chunk);
            if n == 0 {
                break;
            }
            // Parsed where the socket holds them, not copied out first.
            let bytes = kernel.client_recv(k, n);
            trace!(env, "client {ci} reads {n} on k{k}");
            if let Some(parsed) = self.parse(k, bytes, env) {
                self.parsed(k, parsed, kernel, checker, env);
            }
            let delay = self.read_delay;
            if let Some(link) = self.link_to(k) {
                if !delay.is_zero() && kernel.client_unread(k) > 0 {
                    link.read_armed = true;
                    env.after(delay, Ev::ClientRead(ci, k));
                    return;
                }
            }
        }
        if kernel.client_got_fin(k) {
            // A body without a length ends with the connection.
            let mut out = Vec::new();
            let ended = match self.link_to(k) {
                Some(link)
                    if link
                        .parser
                        .pending()
                        .is_some_and(|r| r.framing == Framing::UntilClose) =>
                {
                    link.parser.finish(&mut out).is_ok()
                }
                _ => false,
            };
            for resp in out {
                self.response(k, resp, kernel, checker, env);
            }
            if !self.on(k) || env.failed() {
                return;
            }
            if !ended
                && self
                    .link_to(k)
                    .is_some_and(|link| link.parser.mid_response())
            {
                checker.lost(k, "connection ended (FIN) mid-response", kernel, env);
            }
            trace!(env, "client {ci} reads EOF on k{k}");
            self.conn_ended(kernel, env);
        }
    }

    /// Feeds bytes read on `k` to the response parser (or, upgraded, to
    /// the echo check). What came of them is acted on by [`Self::parsed`],
    /// once the bytes, which are the kernel's, are no longer needed.
    fn parse(&mut self, k: usize, bytes: &[u8], env: &mut Env) -> Option<Parsed> {
        let ci = self.id;
        let Life::Connected(link) = &mut self.life else {
            return None;
        };
        if link.parser.is_upgraded() {
            self.echo_bytes(k, bytes, env);
            return None;
        }
        let Some(&front) = link.inflight.front() else {
            env.fail(Failure::Safety(format!(
                "S4: client {ci}: {} response bytes with no request outstanding on k{k}",
                bytes.len()
            )));
            return None;
        };
        self.reqs[front].got_byte = true;
        let mut responses = Vec::new();
        let http = match link.parser.feed_until_upgrade(bytes, &mut responses) {
            Ok(n) => n,
            Err(e) => {
                env.fail(Failure::Safety(format!(
                    "S4: client {ci}: malformed response on k{k}: {e}"
                )));
                return None;
            }
        };
        Some(Parsed {
            responses,
            upgraded: bytes[http..].to_vec(),
        })
    }

    /// Acts on the responses parsed from one read, then on the bytes of
    /// the new protocol that followed an upgrade in it.
    fn parsed(
        &mut self,
        k: usize,
        parsed: Parsed,
        kernel: &mut Kernel,
        checker: &mut Checker,
        env: &mut Env,
    ) {
        for resp in parsed.responses {
            self.response(k, resp, kernel, checker, env);
            if !self.on(k) || env.failed() {
                return;
            }
        }
        if !parsed.upgraded.is_empty() {
            return self.echo_bytes(k, &parsed.upgraded, env);
        }
        let Some(link) = self.link_to(k) else {
            return;
        };
        if link.parser.mid_response() {
            if let Some(&f) = link.inflight.front() {
                self.reqs[f].got_byte = true;
            }
            if self.abort == Some(AbortAt::MidResponse) {
                self.abort = None;
                self.abort_now(kernel, env);
            }
        }
    }

    fn response(
        &mut self,
        k: usize,
        resp: Response,
        kernel: &mut Kernel,
        checker: &mut Checker,
        env: &mut Env,
    ) {
        let ci = self.id;
        let Life::Connected(link) = &mut self.life else {
            return;
        };
        let interim = resp.status < 200 && resp.status != 101;
        if !interim {
            checker.on_client_response(k, &resp);
        }
        if interim {
            if let Turn::AwaitingContinue(body) = std::mem::replace(&mut link.turn, Turn::Sending) {
                link.outbox.extend(body);
                self.flush(kernel, env);
            }
            return;
        }
        let Some(i) = link.inflight.pop_front() else {
            env.fail(Failure::Safety(format!(
                "S4: client {ci}: response {} with no request outstanding",
                resp.status
            )));
            return;
        };
        if let Some(&f) = link.inflight.front() {
            self.reqs[f].got_byte = false;
        }
        if matches!(link.turn, Turn::AwaitingContinue(_)) {
            link.turn = Turn::Sending;
        }
        let r = &mut self.reqs[i];
        let tok = request::token(ci, i, r.attempt);
        env.answered_at = env.now;
        trace!(
            env,
            "client {ci} got {} for {tok} on k{k}{}",
            resp.status,
            if resp.close { " (close)" } else { "" }
        );
        // Empty lines only: the head clock ran from the first of them.
        if let Some(since) = link.crlf_since.take() {
            let (lo, hi) = self.head_timeout_bound;
            let took = env.now - since;
            if resp.status == 408 && (took < lo || took > hi) {
                env.fail(Failure::Safety(format!(
                    "header timeout: client {ci}: 408 for {tok}, empty lines only, {took:?} after the first, not within [{lo:?}, {hi:?}]"
                )));
                return;
            }
        }
        match token_of(&resp) {
            Some(t) => {
                if t != tok {
                    env.fail(Failure::Safety(format!(
                        "S4: client {ci}: got the answer to {t} while waiting for {tok}: out of order"
                    )));
                    return;
                }
                // A body that streams is the application's from its head:
                // it may answer before the body turns out too slow or large.
                let early_answer = self.streams_bodies
                    && matches!(
                        r.expect,
                        Expect::TooSlow | Expect::TooLarge | Expect::BodyTimeout
                    );
                if r.expect == Expect::TooSlow && !early_answer {
                    env.fail(Failure::Safety(format!(
                        "min body rate: client {ci}: {tok}, its body sent at under half the minimum rate, was answered {}",
                        resp.status
                    )));
                    return;
                }
                let want = if r.shape.upgrade { 101 } else { 200 };
                let expected = r.expect == Expect::Answer || early_answer;
                if !expected || !(resp.status == want || resp.status == 204 && want == 200) {
                    env.fail(Failure::Safety(format!(
                        "S3: client {ci}: {tok} ({:?}) was answered by the application with {}",
                        r.expect, resp.status
                    )));
                    return;
                }
                if let Err(e) = check_stream(&tok, &resp, checker.closed_with_loss(k)) {
                    return env.fail(Failure::Safety(format!("client {ci} on k{k}: {e}")));
                }
                if resp.header("x-stream").is_some() && resp.framing != Framing::Bodiless {
                    self.cover.streams_read += 1;
                }
                r.fate = Fate::Complete;
                if resp.status == 101 {
                    link.turn = Turn::Echoing;
                    trace!(env, "client {ci} upgraded on k{k}");
                    return self.next_echo(k, kernel, env);
                }
            }
            // The application failed this attempt: core's 500 is its answer.
            None if resp.status == 500 && r.fault_attempt == Some(r.attempt) => {
                r.fate = Fate::Complete;
            }
            // Core's farewell to a request the drain deadline cut while it
            // was arriving: a clean refusal, so retry it (elsewhere).
            None if is_farewell(&resp) => {
                if self.retries_left > 0 {
                    self.retries_left -= 1;
                    r.attempt += 1;
                    r.fate = Fate::Unsent;
                } else {
                    r.fate = Fate::GaveUp;
                }
            }
            None => {
                let ok = resp.status == 408
                    || match r.expect {
                        Expect::TooLarge => resp.status == 413,
                        Expect::Reject => resp.status >= 400,
                        Expect::Answer
                        | Expect::HeadTimeout
                        | Expect::TooSlow
                        | Expect::BodyTimeout => false,
                    };
                if !ok || !resp.close {
                    env.fail(Failure::Safety(format!(
                        "S2: client {ci}: {tok} ({:?}) rejected with {} (close: {})",
                        r.expect, resp.status, resp.close
                    )));
                    return;
                }
                r.fate = Fate::Rejected(resp.status);
            }
        }
        if resp.close {
            link.turn = Turn::Closing;
        }
        match self.kind {
            Kind::CrlfTrickler if resp.status == 408 => self.cover.crlf_408 += 1,
            Kind::BodyTrickler if resp.status == 408 => self.cover.slow_body_408 += 1,
            Kind::BodyStopper if resp.status == 408 => self.cover.body_stopped_408 += 1,
            Kind::Racing
                if self.reqs[i].fate == Fate::Complete
                    && self
                        .race
                        .is_some_and(|r| env.now.since_epoch() >= r.drain_at) =>
            {
                self.cover.racing_in_drain += 1
            }
            _ => {}
        }
        if !self.unresolved() {
            self.finish(kernel, env);
            return;
        }
        let Life::Connected(link) = &mut self.life else {
            return;
        };
        if link.turn == Turn::Closing {
            // The server closes next; what is left goes on a new connection.
        } else if matches!(self.kind, Kind::KeepAlive | Kind::Racing) && link.inflight.is_empty() {
            link.turn = Turn::Thinking;
            let d = self.think_time(env);
            env.after(d, Ev::ClientWake(ci, k, Wake::Think));
        } else {
            self.fill(kernel, checker, env);
            self.flush(kernel, env);
        }
    }

    /// Bytes of the `echo` protocol on upgraded `k`: exactly the next bytes
    /// it sent and has not had back. Once all came back, the next message
    /// (after a think), or the client is done.
    fn echo_bytes(&mut self, k: usize, bytes: &[u8], env: &mut Env) {
        let ci = self.id;
        let Life::Connected(link) = &mut self.life else {
            return;
        };
        let owed = link.echo_owed.len();
        let intact = bytes.len() <= owed && starts_with(&link.echo_owed, bytes);
        if intact {
            link.echo_owed.drain(..bytes.len());
        }
        if !intact {
            return env.fail(Failure::Safety(format!(
                "upgrade: client {ci} on k{k}: {} bytes came back, not the next {} of its own",
                bytes.len(),
                owed.min(bytes.len())
            )));
        }
        if link.echo_owed.is_empty() && link.turn == Turn::Echoing {
            self.cover.echoes_read += 1;
            let think = self.echo.map_or(Duration::ZERO, |e| e.think);
            let d = think / 2 + env.rng.upto(think / 2);
            env.after(d, Ev::ClientWake(ci, k, Wake::Echo));
        }
    }

    /// An upgraded client sends its next message, or, with none left (or
    /// its time up), closes.
    fn next_echo(&mut self, k: usize, kernel: &mut Kernel, env: &mut Env) {
        let ci = self.id;
        let Some(mut echo) = self.echo else {
            return;
        };
        let Some(link) = self.link_to(k) else {
            return;
        };
        if !link.echo_owed.is_empty() {
            return;
        }
        let more = match echo.until {
            Some(until) => env.now < until,
            None => echo.sent < echo.messages,
        };
        if !more || !kernel.client_can_send(k) {
            trace!(env, "client {ci} ends its upgraded k{k}");
            return self.finish(kernel, env);
        }
        let msg = request::echo_message(ci, echo.sent, echo.len);
        echo.sent += 1;
        link.queued += msg.len() as u64;
        link.outbox.extend(&msg);
        link.echo_owed.extend(msg);
        self.echo = Some(echo);
        self.flush(kernel, env);
    }

    /// A reset arrived on `k`; `destroyed` unread bytes went with it.
    pub fn reset(
        &mut self,
        k: usize,
        destroyed: usize,
        kernel: &mut Kernel,
        checker: &mut Checker,
        env: &mut Env,
    ) {
        let Some(link) = self.link_to(k) else {
            return;
        };
        if destroyed > 0 || link.parser.mid_response() {
            let what = format!("reset destroyed {destroyed} unread response bytes");
            checker.lost(k, &what, kernel, env);
        }
        self.conn_ended(kernel, env);
    }

    /// The connection is over (FIN read, or reset): retry what got no byte.
    fn conn_ended(&mut self, kernel: &mut Kernel, env: &mut Env) {
        let Life::Connected(link) = std::mem::replace(&mut self.life, Life::Waiting) else {
            return;
        };
        kernel.client_close(link.k, env);
        for i in link.inflight {
            let r = &mut self.reqs[i];
            if r.got_byte {
                r.fate = Fate::Lost;
            } else if self.retries_left > 0 {
                self.retries_left -= 1;
                r.attempt += 1;
                r.fate = Fate::Unsent;
            } else {
                r.fate = Fate::GaveUp;
            }
        }
        self.reconnect_or_finish(kernel, env);
    }

    fn reconnect_or_finish(&mut self, kernel: &mut Kernel, env: &mut Env) {
        if !self.unresolved() {
            self.finish(kernel, env);
        } else if self.conns_left == 0 {
            for r in self.reqs.iter_mut().filter(|r| r.fate == Fate::Unsent) {
                r.fate = Fate::GaveUp;
            }
            self.finish(kernel, env);
        } else {
            self.life = Life::Waiting;
            let d = env.rng.micros(1_000, 50_000);
            env.after(d, Ev::ClientStart(self.id));
        }
    }

    fn finish(&mut self, kernel: &mut Kernel, env: &mut Env) {
        if let Life::Connected(link) = std::mem::replace(&mut self.life, Life::Done) {
            trace!(env, "client {} done, closes k{}", self.id, link.k);
            kernel.client_close(link.k, env);
        }
    }

    fn abort_now(&mut self, kernel: &mut Kernel, env: &mut Env) {
        let Life::Connected(link) = std::mem::replace(&mut self.life, Life::Done) else {
            return;
        };
        for r in self
            .reqs
            .iter_mut()
            .filter(|r| matches!(r.fate, Fate::Unsent | Fate::Sent))
        {
            r.fate = Fate::Aborted;
        }
        trace!(env, "client {} aborts k{}", self.id, link.k);
        kernel.client_abort(link.k, env);
    }

    /// A client timer fired (ignored if it was for an older connection).
    pub fn wake(
        &mut self,
        k: usize,
        wake: Wake,
        kernel: &mut Kernel,
        checker: &mut Checker,
        env: &mut Env,
    ) {
        let Some(link) = self.link_to(k) else {
            return;
        };
        match wake {
            Wake::Flush => {
                link.flush_armed = false;
                self.flush(kernel, env);
            }
            Wake::Think => {
                link.turn = Turn::Sending;
                self.fill(kernel, checker, env);
                self.flush(kernel, env);
            }
            Wake::Abort => self.abort_now(kernel, env),
            Wake::Continue => {
                if let Turn::AwaitingContinue(body) =
                    std::mem::replace(&mut link.turn, Turn::Sending)
                {
                    link.outbox.extend(body);
                    self.flush(kernel, env);
                }
            }
            Wake::SilentEnd => self.finish(kernel, env),
            Wake::BodyTimeoutDue => {
                // No byte of an answer yet (a streamed body's application
                // may answer first, unread), on a connection core has not
                // closed in a way that may cut what it owed (the drain's
                // deadline, a forced exit) and where it was free to read
                // the request (no stream before it left open): core kept a
                // body that stopped past its timeout.
                let Some(&i) = link.inflight.front() else {
                    return;
                };
                let r = &self.reqs[i];
                let excused = checker.closed_with_loss(k) || checker.stream_open(k);
                if r.expect == Expect::BodyTimeout && !r.got_byte && !excused {
                    let tok = request::token(self.id, i, r.attempt);
                    env.fail(Failure::Safety(format!(
                        "body timeout: client {}: {tok}, its body stopped short on k{k}, has no 408 {:?} after its last byte (body_read_timeout, accept delay, latency both ways, read delays)",
                        self.id, self.body_timeout_by
                    )));
                }
            }
            Wake::Echo => self.next_echo(k, kernel, env),
        }
    }
}

impl fmt::Display for Client {
    /// The client, its kind, its requests' fates and where it is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fates: Vec<Fate> = self.reqs.iter().map(|r| r.fate).collect();
        write!(
            f,
            "client {} ({:?}): fates {fates:?}, life {:?}",
            self.id, self.kind, self.life
        )
    }
}

/// Every client of the world.
pub struct Clients {
    list: Vec<Client>,
}

impl Clients {
    /// `knobs.clients` clients, their kinds weighted by the knobs.
    pub fn new(knobs: &Knobs, rng: &mut Rng) -> Clients {
        let list = (0..knobs.clients)
            .map(|id| {
                let kind = Kind::ALL[rng.weighted(&knobs.weights).unwrap_or(0)];
                Client::new(id, kind, rng, knobs)
            })
            .collect();
        Clients { list }
    }

    /// How many clients there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Client `ci`.
    pub fn get(&mut self, ci: usize) -> &mut Client {
        &mut self.list[ci]
    }

    /// Every client.
    pub fn iter(&self) -> impl Iterator<Item = &Client> {
        self.list.iter()
    }

    /// Request `no` of client `ci`'s script, if there is one.
    pub fn req(&self, ci: usize, no: usize) -> Option<&Req> {
        self.list.get(ci).and_then(|c| c.reqs.get(no))
    }

    /// The application will fail `attempt` of request `no` of client `ci`:
    /// core's 500 will be its complete answer.
    pub fn app_fails(&mut self, ci: usize, no: usize, attempt: u32) {
        self.list[ci].reqs[no].fault_attempt = Some(attempt);
    }

    /// Requests whose client read a complete answer, and of those, how many
    /// were core's 500 for an application fault.
    pub fn answered(&self) -> (u64, u64) {
        let reqs = self.list.iter().flat_map(|c| &c.reqs);
        let complete = reqs.clone().filter(|r| r.fate == Fate::Complete).count();
        let faulted = reqs.filter(|r| r.completed_by_fault()).count();
        (complete as u64, faulted as u64)
    }

    /// What the clients met.
    pub fn cover(&self) -> ClientCover {
        let mut sum = ClientCover::default();
        for c in &self.list {
            sum.crlf_408 += c.cover.crlf_408;
            sum.slow_body_408 += c.cover.slow_body_408;
            sum.body_stopped_408 += c.cover.body_stopped_408;
            sum.racing_in_drain += c.cover.racing_in_drain;
            sum.streams_read += c.cover.streams_read;
            sum.echoes_read += c.cover.echoes_read;
            sum.sent_past_close += c.cover.sent_past_close;
        }
        sum
    }

    /// Requests core refused, as their clients saw.
    pub fn rejected(&self) -> u64 {
        self.list
            .iter()
            .flat_map(|c| &c.reqs)
            .filter(|r| matches!(r.fate, Fate::Rejected(_)))
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_with_looks_across_both_slices_of_the_queue() {
        let mut queue = VecDeque::with_capacity(8);
        queue.extend(*b".....a");
        queue.drain(..5);
        queue.extend(*b"bcdef");
        assert!(!queue.as_slices().1.is_empty(), "the queue wraps");
        for yes in [&b""[..], b"ab", b"abcdef"] {
            assert!(starts_with(&queue, yes));
        }
        for no in [&b"abd"[..], b"abcdeg", b"abcdefg"] {
            assert!(!starts_with(&queue, no));
        }
    }
}
