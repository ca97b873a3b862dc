//! Raw bytes into one connection, whole and split.
//!
//! The input is the byte stream a client sends; every other choice (where the
//! stream is split, how each request is answered, how many bytes each write
//! takes, whether the client ends with FIN) comes from a generator seeded with
//! a hash of the input, so a seed file is just a request as sent on the wire.
//!
//! The application answers every request at once — one that asks to switch
//! protocols, half the time with a `101`, after which it reads the rest of
//! the input itself and then closes the connection — and the driver writes
//! all output at once (the split run in pieces of random size, the whole
//! run in one piece each time), so nothing in the conversation depends on
//! where the input was split. Hence the oracle:
//! - the whole input and the split input give the same requests (method,
//!   target, version, headers, body), the same responses on the wire (an
//!   interim 100 Continue aside: it depends on whether the body had already
//!   arrived), and both end with the connection closed (whether core closes
//!   at once or lingers first may depend on whether more input had arrived,
//!   so the half-close itself is not compared); after a switch, the
//!   application reads the same bytes (what core had read beyond the
//!   upgrade request, then the rest), and core neither reads nor writes the
//!   connection again;
//! - what is written parses as responses in request order, each with the
//!   framing core promises; a request that asked to close (RFC 9112 §9.6)
//!   gets `Connection: close`; nothing follows a `Connection: close` response
//!   (S4); a response core made itself is a 4xx/5xx with `Connection: close`;
//! - every request handed over is answered completely, and an application
//!   fault (an invalid answer, or none) is answered by core with a 500 in the
//!   request's place (S2);
//! - the invariants hold, and the count equals the recount, after every
//!   input (S1);
//! - once the client's bytes are in, running the clock forward closes the
//!   connection.
//!
//! Kept lean, as it runs tens of thousands of times a second: the input is
//! hashed once and every stream of choices is seeded from that hash; the
//! invariants are checked once per core input (core's own check compares
//! the count with a recount), and not again at the end of a drain whose
//! last input was checked; the split run feeds byte by byte only through
//! the first head (at most 256 bytes), and once core lingers, the rest in
//! one piece; the whole run writes whole, the split run alone in random
//! pieces; large response bodies are slices of one shared buffer; the
//! requests are copied by the whole run only, the split run checks its
//! own against them in place; the output is parsed once when both runs
//! wrote the same bytes (the common case), and otherwise the two runs'
//! responses are compared in place, not copied. (Profiled with callgrind
//! over a replay of a grown corpus, and in the fuzz loop: libFuzzer's own
//! bookkeeping of the edges each input reaches is half of each execution;
//! of the target's half, core's input handling and invariant check and the
//! response parser's head parsing are what remains.)

use std::time::Duration;

use std::ops::Range;

use ebb_core::{CloseReason, Config, ConnId, Event, RequestId, Server, Time};

use super::wire::SEQ_HEADER;
use super::wire::{asks_to_close, asks_to_upgrade, Answer, Answered, AppLog, BadAnswer, Wire};
use crate::properties::assert_invariants;
use crate::rng::Rng;

/// The input's hash, taken once: every stream of choices is seeded from it
/// as [`Rng::from_input`] would seed it from the input itself.
#[derive(Clone, Copy)]
struct Seed(u64);

impl Seed {
    fn of(data: &[u8]) -> Seed {
        // FNV-1a, as `Rng::from_input`.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Seed(h)
    }

    /// The stream `Rng::from_input(data, salt)` gives.
    fn rng(self, salt: u64) -> Rng {
        Rng::new(self.0 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
}

/// The longest prefix the split run feeds one byte at a time.
const BYTEWISE_PREFIX: usize = 256;

/// Small limits, so that fuzz-sized inputs reach them.
fn config() -> Config {
    Config {
        max_head_bytes: 2048,
        max_headers: 32,
        max_target_bytes: 256,
        max_body_bytes: 2048,
        max_chunk_line_bytes: 32,
        max_trailer_bytes: 128,
        max_pipelined_bytes: 256,
        // Lingering counts discarded bytes only as they arrive, so a limit
        // the input can reach would make the outcome depend on the split.
        max_linger_bytes: u64::MAX,
        ..Config::default()
    }
}

/// Feeds `data` to one connection whole and split, and checks both runs.
pub fn request_bytes(data: &[u8]) {
    request_bytes_salted(data, 0);
}

/// [`request_bytes`] with every choice drawn from other streams of the
/// generator: salt 0 is the fuzz target itself. The corpus replay runs each
/// minimised crash under many salts, so that it keeps guarding its bug when
/// the generator, and with it the splits and answers an input gets, changes.
pub fn request_bytes_salted(data: &[u8], salt: u32) {
    let seed = Seed::of(data);
    let mut rng = seed.rng(stream(salt, 0));
    let eof = rng.one_in(2);
    let whole = run(data, &[data.len()], eof, seed, salt, None);
    let whole_responses = whole.check_output();
    let cuts = cut_points(data, &mut rng);
    let split = run(data, &cuts, eof, seed, salt, Some(&whole));
    split.requests.check_all_seen();
    assert_eq!(
        (whole.upgraded, &whole.app_input),
        (split.upgraded, &split.app_input),
        "the upgraded stream differs when split"
    );
    // The same requests got the same answers, so the same bytes read back
    // as the same responses: checked once.
    if split.out == whole.out {
        return;
    }
    let split_responses = split.check_output();
    let responses = |r: &Run, at: &[Range<usize>]| -> Vec<String> {
        at.iter()
            .map(|a| String::from_utf8_lossy(&r.out[a.clone()]).into_owned())
            .collect()
    };
    let same = whole_responses.len() == split_responses.len()
        && whole_responses
            .iter()
            .zip(&split_responses)
            .all(|(a, b)| whole.out[a.clone()] == split.out[b.clone()]);
    if !same {
        // Only now are the responses copied, to show the difference.
        assert_eq!(
            responses(&whole, &whole_responses),
            responses(&split, &split_responses),
            "responses differ when split"
        );
    }
}

/// The salt of one stream of choices: `which` stream, under `salt`.
fn stream(salt: u32, which: u32) -> u64 {
    u64::from(salt) << 32 | u64::from(which)
}

/// Ends of the pieces `data` is split into: in one run in four, one byte
/// at a time through its first head (where the parsers' state machines
/// are; at most [`BYTEWISE_PREFIX`] bytes), then a few random cuts;
/// otherwise random cuts only.
fn cut_points(data: &[u8], rng: &mut Rng) -> Vec<usize> {
    let len = data.len();
    let bytewise = if rng.one_in(4) {
        first_head_len(&data[..len.min(BYTEWISE_PREFIX)])
    } else {
        0
    };
    let mut cuts: Vec<usize> = (1..=bytewise).collect();
    cuts.extend((0..1 + rng.index(8)).map(|_| bytewise + rng.index(len - bytewise + 1)));
    cuts.push(len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts.retain(|&c| c > 0);
    cuts
}

/// Where the first head in `data` ends: after its first empty line (LF or
/// CRLF), or all of `data` if it has none.
fn first_head_len(data: &[u8]) -> usize {
    data.windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| i + 2)
        .into_iter()
        .chain(data.windows(3).position(|w| w == b"\n\r\n").map(|i| i + 3))
        .min()
        .unwrap_or(data.len())
}

/// How many of the `total` bytes offered the next write takes: all of them,
/// or in a run with `sizes`, a random piece two times in three.
fn write_size(sizes: Option<&mut Rng>, total: usize) -> usize {
    let Some(sizes) = sizes else { return total };
    match sizes.below(3) {
        0 => total,
        _ => 1 + sizes.index(total),
    }
}

/// A request as the application saw it.
#[derive(Debug, PartialEq, Eq)]
struct SeenRequest {
    method: String,
    target: String,
    version: ebb_core::Version,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl SeenRequest {
    fn of(req: &ebb_core::Request<'_>) -> SeenRequest {
        SeenRequest {
            method: req.method().to_owned(),
            target: req.target().to_owned(),
            version: req.version(),
            headers: req
                .headers()
                .map(|(n, v)| (n.to_owned(), v.to_vec()))
                .collect(),
            body: req.body().to_vec(),
        }
    }

    /// `SeenRequest::of(req) == *self`, without copying `req`.
    fn is(&self, req: &ebb_core::Request<'_>) -> bool {
        let headers = self.headers.iter().map(|(n, v)| (n.as_str(), &v[..]));
        self.method == req.method()
            && self.target == req.target()
            && self.version == req.version()
            && headers.eq(req.headers())
            && self.body == req.body()
    }
}

/// The requests a run saw: the whole run records them; the split run
/// checks each against that record as it arrives, so only one run copies
/// them.
enum Requests<'a> {
    Record(Vec<SeenRequest>),
    Expect {
        record: &'a [SeenRequest],
        seen: usize,
    },
}

impl Requests<'_> {
    fn count(&self) -> usize {
        match self {
            Requests::Record(record) => record.len(),
            Requests::Expect { seen, .. } => *seen,
        }
    }

    fn record(&self) -> &[SeenRequest] {
        match self {
            Requests::Record(record) => record,
            Requests::Expect { record, .. } => record,
        }
    }

    /// Records `req`, or checks it is the next request of the record.
    fn see(&mut self, req: &ebb_core::Request<'_>) {
        match self {
            Requests::Record(record) => record.push(SeenRequest::of(req)),
            Requests::Expect { record, seen } => {
                let expected = record.get(*seen);
                if !expected.is_some_and(|e| e.is(req)) {
                    assert_eq!(
                        Some(&SeenRequest::of(req)),
                        expected,
                        "request {seen} differs when split"
                    );
                }
                *seen += 1;
            }
        }
    }

    /// The split run saw every request of the record, not just a prefix.
    fn check_all_seen(&self) {
        if let Requests::Expect { record, seen } = self {
            assert_eq!(
                *seen,
                record.len(),
                "requests differ when split: fewer requests"
            );
        }
    }
}

struct Run<'a> {
    server: Server,
    conn: ConnId,
    now: Time,
    /// Chooses the size of each write: in the split run only. The whole
    /// run writes all that `transmit` offers at once, with the fewest
    /// inputs, as the reference the split run's partial writes must match.
    writes: Option<Rng>,
    /// The seed of the application's choices, the same in both runs.
    seed: Seed,
    salt: u32,
    requests: Requests<'a>,
    is_head: Vec<bool>,
    /// By request: whether the client asked to close after it.
    asks_to_close: Vec<bool>,
    /// By request: whether the application failed it (core answers 500).
    faulted: Vec<bool>,
    /// Every byte written to the connection.
    out: Vec<u8>,
    half_closed: bool,
    closed: bool,
    /// The application switched protocols (a `101` is queued).
    switched: bool,
    /// Core handed the connection over (`Upgraded`).
    upgraded: bool,
    /// What the application read after the switch: the bytes core had
    /// read beyond the upgrade request, then the rest of the input.
    app_input: Vec<u8>,
}

/// Feeds `data` in the pieces `cuts` ends, then FIN if `eof`, then runs the
/// clock until the connection is closed; returns what the run observed. The
/// run after the `whole` one writes in pieces of random size, and checks
/// the requests it sees against the whole run's.
fn run<'a>(
    data: &[u8],
    cuts: &[usize],
    eof: bool,
    seed: Seed,
    salt: u32,
    whole: Option<&'a Run<'_>>,
) -> Run<'a> {
    let mut server = Server::new(config());
    let now = Time::from_millis(1000);
    let conn = server.handle_accept(now);
    let requests = match whole {
        None => Requests::Record(Vec::new()),
        Some(whole) => Requests::Expect {
            record: whole.requests.record(),
            seen: 0,
        },
    };
    let mut r = Run {
        server,
        conn,
        now,
        writes: whole.map(|_| seed.rng(stream(salt, 2))),
        seed,
        salt,
        requests,
        is_head: Vec::new(),
        asks_to_close: Vec::new(),
        faulted: Vec::new(),
        // The split run nearly always writes what the whole run wrote: room
        // for that spares copying the output as it grows.
        out: Vec::with_capacity(whole.map_or(0, |w| w.out.len())),
        half_closed: false,
        closed: false,
        switched: false,
        upgraded: false,
        app_input: Vec::new(),
    };
    r.drain();
    let mut from = 0;
    for &to in cuts {
        if r.closed {
            break;
        }
        if r.upgraded {
            // The application reads the socket now.
            r.app_input.extend_from_slice(&data[from..to]);
            from = to;
            continue;
        }
        if r.half_closed && to < data.len() {
            // Lingering, core only discards what arrives, with no limit the
            // input can reach: the rest goes in one piece.
            continue;
        }
        // The application answered everything and every byte was written,
        // so core has no reason to stop reading.
        assert!(
            r.server.wants_read(conn),
            "core stopped reading a connection with nothing outstanding"
        );
        r.server.handle_recv(conn, &data[from..to], r.now);
        r.drain();
        from = to;
    }
    if r.upgraded {
        // The application ends the new protocol and reports it.
        r.server.handle_upgraded_closed(conn, r.now);
        r.drain();
    } else if eof && !r.closed {
        r.server.handle_peer_eof(conn, r.now);
        r.drain();
    }
    // Idle, header, linger: each deadline in turn ends the connection.
    for _ in 0..3 {
        r.now = r.now + Duration::from_secs(3600);
        r.server.handle_timeout(r.now);
        r.drain();
    }
    assert!(
        r.closed,
        "connection still open after every deadline passed"
    );
    assert_eq!(r.server.connections(), 0);
    r
}

impl Run<'_> {
    /// Carries out every event, as a driver does after each input, then
    /// checks the invariants. Each input the events led to checks its own,
    /// and taking events changes nothing they cover: so when the events
    /// led to an input, the state after the last one is checked already.
    fn drain(&mut self) {
        let mut checked = false;
        while let Some(event) = self.server.poll_event() {
            match event {
                Event::Request(id) => {
                    self.answer(id);
                    checked = true;
                }
                Event::Transmit(c) => {
                    assert_eq!(c, self.conn);
                    checked |= self.write_all();
                }
                Event::ResumeRead(c) => assert_eq!(c, self.conn),
                Event::Finished(f) => assert_eq!(f.conn, self.conn),
                Event::HalfClose(c, _) => {
                    assert_eq!(c, self.conn);
                    assert!(!self.closed, "half-close after close");
                    assert!(!self.half_closed, "half-closed twice");
                    assert_eq!(
                        self.server.transmit(c),
                        [&[][..], &[]],
                        "half-close with output queued"
                    );
                    self.half_closed = true;
                }
                Event::Close(c, reason) => {
                    assert_eq!(c, self.conn);
                    assert!(!self.closed, "closed twice");
                    assert!(
                        !self.upgraded || reason == CloseReason::UpgradedClosed,
                        "an upgraded connection closed for {reason:?}"
                    );
                    self.closed = true;
                }
                Event::Upgraded(c) => {
                    assert_eq!(c, self.conn);
                    assert!(self.switched && !self.upgraded, "Upgraded without a 101");
                    self.upgraded = true;
                    self.app_input = self.server.take_upgraded_input(c);
                    assert!(
                        !self.server.wants_read(c),
                        "core reads an upgraded connection"
                    );
                    assert_eq!(
                        self.server.transmit(c),
                        [&[][..], &[]],
                        "core writes on an upgraded connection"
                    );
                }
                e @ (Event::BodyReady(_) | Event::StreamWritable(_) | Event::StopUpgraded(_)) => {
                    panic!("{e:?}, but this application streams nothing and never stops")
                }
                // Asked before a timer closes the idle connection: this
                // driver hands core every byte at once, so none wait.
                Event::CountUnread(c) => {
                    assert_eq!(c, self.conn);
                    self.server.handle_unread(c, 0, self.now);
                    checked = true;
                }
                e @ (Event::DrainBacklog
                | Event::CloseListener
                | Event::Farewell(..)
                | Event::Exit) => {
                    panic!("{e:?} without terminate")
                }
            }
        }
        if !checked {
            self.check();
        }
    }

    fn check(&self) {
        assert_invariants(&self.server); // S1
    }

    /// The application answers request `id` at once, or sometimes fails it
    /// (an invalid answer, or none), which core must answer with 500.
    fn answer(&mut self, id: RequestId) {
        assert!(!self.closed, "request on a closed connection");
        let seq = id.seq();
        assert_eq!(
            seq as usize,
            self.requests.count(),
            "request out of sequence"
        );
        let req = self
            .server
            .request(id)
            .expect("a dispatched request can be read");
        self.requests.see(&req);
        self.is_head.push(req.method() == "HEAD");
        self.asks_to_close.push(asks_to_close(&req));
        let upgrade = asks_to_upgrade(&req);

        let mut app = self.seed.rng(stream(self.salt, 100 + seq));
        let faulted = app.one_in(4);
        self.faulted.push(faulted);
        if faulted {
            BadAnswer::pick(app.index(7)).attempt(&mut self.server, id, self.now);
        } else if upgrade && app.one_in(2) {
            let result = self.server.handle_upgrade(
                id,
                [
                    ("Upgrade", "echo".to_owned()),
                    (SEQ_HEADER, seq.to_string()),
                ],
                self.now,
            );
            assert_eq!(result, Ok(()), "an upgrade the request asked for");
            self.switched = true;
        } else {
            self.answer_validly(id, &mut app);
        }
        assert_eq!(
            self.server
                .handle_response(id, 200, [("A", "b")], bytes::Bytes::new(), self.now),
            Err(ebb_core::RespondError::UnknownRequest),
            "a request answered twice"
        );
        self.check();
    }

    fn answer_validly(&mut self, id: RequestId, app: &mut Rng) {
        let seq = id.seq();
        let status = match app.below(4) {
            0 => 200,
            1 => [204, 304, 201, 206][app.index(4)],
            _ => 200 + app.below(400) as u16,
        };
        let body_len = match app.below(8) {
            0 => 20_000,
            1 | 2 => 0,
            _ => app.index(100),
        };
        let answer = Answer::new(seq, status, app.next_u64() as u8, body_len);
        let result = self.server.handle_response(
            id,
            answer.status,
            answer.headers.iter().map(|(n, v)| (*n, v.as_str())),
            answer.body,
            self.now,
        );
        assert_eq!(result, Ok(()), "a valid answer to a waiting request");
    }

    /// Writes everything `transmit` offers, in pieces of random size in
    /// the split run; returns whether it wrote anything (each write is an input, checked).
    fn write_all(&mut self) -> bool {
        let mut wrote = false;
        loop {
            let [a, b] = self.server.transmit(self.conn);
            let total = a.len() + b.len();
            if total == 0 {
                return wrote;
            }
            wrote = true;
            let n = write_size(self.writes.as_mut(), total);
            let from_a = n.min(a.len());
            self.out.extend_from_slice(&a[..from_a]);
            self.out.extend_from_slice(&b[..n - from_a]);
            self.server.handle_sent(self.conn, n, self.now);
            self.check();
        }
    }

    /// Parses everything written: responses in request order, core's own
    /// responses only rejections that close, nothing after a close. Returns
    /// where the final responses are.
    fn check_output(&self) -> Vec<Range<usize>> {
        let seqs: Vec<u32> = (0..self.requests.count() as u32).collect();
        let faulted: Vec<u32> = seqs
            .iter()
            .copied()
            .filter(|&seq| self.faulted[seq as usize])
            .collect();
        let app = AppLog {
            is_head: &self.is_head,
            answered: &seqs,
            faulted: &faulted,
            streamed: &[],
            http10: &[],
        };
        let mut wire = Wire::new();
        let mut finals = Vec::new();
        let mut answered = 0;
        let mut closed_by = None;
        let mut at = 0;
        for Answered { response: r, seq } in wire.feed(&self.out, &app) {
            if let Some(status) = closed_by {
                panic!("S4: bytes written after a {status} response with Connection: close");
            }
            if r.status != 100 {
                match seq {
                    Some(seq) => {
                        assert_eq!(seq, answered, "S4: responses out of request order");
                        // A 101 leaves HTTP: there is no next request.
                        assert!(
                            r.close || r.status == 101 || !self.asks_to_close[seq as usize],
                            "the client asked to close, the response does not say so"
                        );
                        answered += 1;
                    }
                    None => {
                        assert!(
                            (400..=599).contains(&r.status),
                            "core's own response has status {}",
                            r.status
                        );
                        assert!(r.close, "core's error response does not close");
                    }
                }
                if r.close {
                    closed_by = Some(r.status);
                }
                finals.push(at..at + r.wire_len);
            }
            at += r.wire_len;
        }
        if wire.mid_response() {
            if let Some(status) = closed_by {
                panic!("S4: bytes written after a {status} response with Connection: close");
            }
            panic!("an incomplete response was written and the connection closed");
        }
        assert_eq!(
            answered as usize,
            self.requests.count(),
            "S2: a request was not answered completely"
        );
        finals
    }
}
