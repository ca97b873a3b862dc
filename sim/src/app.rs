//! The application: answers at once, or after a delay that may pass the
//! drain deadline (so answers come out of order across connections). Every
//! request it gets is checked against what its client sent. In some seeds it
//! fails a share of requests — an invalid response, or none at all — and core
//! must answer those with 500 in their place.
//!
//! In seeds whose knobs say so it also streams: response bodies produced a
//! piece at a time over virtual time (some with a declared length, some
//! not; some producers stop without ending, some send more or fewer bytes
//! than they declared), request bodies read a piece at a time (sometimes
//! slowly, so core stops reading; sometimes not at all), and connections
//! upgraded to an `echo` protocol whose bytes it sends back until the
//! client leaves, the drain tells it to stop, or the deadline cuts them.

use std::collections::BTreeMap;
use std::time::Duration;

use ebb_core::{BodyLength, Bytes, ConnId, Request, RequestId, RespondError, StreamError};

use crate::client::Clients;
use crate::env::Env;
use crate::failure::Failure;
use crate::knobs::Knobs;
use crate::request;
use crate::trace;

/// How the application fails a request; core answers 500 in its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A status outside 200–599.
    BadStatus,
    /// A header value with CR and LF.
    BadHeader,
    /// No answer at all: the handler panicked, or dropped its responder
    /// (`handle_app_failure`).
    Dropped,
}

impl Fault {
    const ALL: [Fault; 3] = [Fault::BadStatus, Fault::BadHeader, Fault::Dropped];
}

/// A request the application accepted: whose it is and how it will answer.
#[derive(Clone, Debug)]
pub struct Got {
    pub client: usize,
    pub no: usize,
    pub attempt: u32,
    pub token: String,
    /// Bytes its client wrote for it (head and framed body).
    pub raw_len: usize,
    /// How the application will fail it, if it will.
    pub fault: Option<Fault>,
    /// When it answers: now, or after this delay. `None` too for a request
    /// whose streamed body it reads first: it answers once the body ended.
    pub delay: Option<Duration>,
    /// An HTTP/1.0 request (never answered chunked).
    pub http10: bool,
    /// It asked to close the connection after its answer (RFC 9112 §9.6).
    pub asks_close: bool,
    /// Its body streams: core handed it over at its head.
    pub streams_body: bool,
    /// The application reads its streamed body before answering.
    pub reads_body: bool,
}

/// What the application gives core for one request.
#[derive(Clone, Debug)]
pub struct Answer {
    pub token: String,
    pub kind: AnswerKind,
    pub fault: Option<Fault>,
}

/// The three ways the application answers.
#[derive(Clone, Debug)]
pub enum AnswerKind {
    /// A whole response; `None`: no answer at all (`handle_app_failure`).
    Whole(Option<Response>),
    /// A head whose body follows in pieces (`handle_stream_start`), of
    /// `total` bytes meant.
    Stream {
        status: u16,
        headers: Headers,
        length: BodyLength,
        total: usize,
    },
    /// `101 Switching Protocols` (`handle_upgrade`).
    Upgrade { headers: Headers },
}

/// A response, valid or not.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: Bytes,
}

/// An answer's headers: one of a few fixed lists, whose values name what
/// they are (see [`Answer::headers`]), so no list or value is made per
/// answer.
pub type Headers = &'static [(&'static str, Value)];

/// A header's value.
#[derive(Clone, Copy, Debug)]
pub enum Value {
    /// The request's token.
    Token,
    /// The total a streamed body means to have, in decimal.
    Total,
    /// These bytes.
    Fixed(&'static [u8]),
}

/// The token, in `x-req`.
const TOKEN: Headers = &[("x-req", Value::Token)];

/// A stream's: the token, and the total it means to produce.
const STREAM: Headers = &[("x-req", Value::Token), ("x-stream", Value::Total)];

/// An upgrade's.
const UPGRADE: Headers = &[("Upgrade", Value::Fixed(b"echo")), ("x-req", Value::Token)];

/// A header value core must refuse (`Fault::BadHeader`).
const BAD_HEADER: Headers = &[
    ("x-req", Value::Token),
    ("x-note", Value::Fixed(b"split\r\nx-evil: 1")),
];

impl Answer {
    /// `headers` of this answer as core takes them; `total` is a stream's
    /// [`Value::Total`], written out.
    pub fn headers<'a>(
        &'a self,
        headers: Headers,
        total: &'a str,
    ) -> impl Iterator<Item = (&'static str, &'a [u8])> {
        headers.iter().map(move |&(name, value)| {
            let bytes = match value {
                Value::Token => self.token.as_bytes(),
                Value::Total => total.as_bytes(),
                Value::Fixed(bytes) => bytes,
            };
            (name, bytes)
        })
    }

    /// What `handle_response` (or `handle_stream_start`, `handle_upgrade`)
    /// must return for this answer, given whether the request still waited
    /// for one (`live`).
    pub fn expected(&self, live: bool) -> Result<(), RespondError> {
        let answers = !matches!(self.kind, AnswerKind::Whole(None));
        match (live, self.fault) {
            (false, _) if answers => Err(RespondError::UnknownRequest),
            (_, Some(Fault::BadStatus)) => Err(RespondError::InvalidStatus),
            (_, Some(Fault::BadHeader)) => Err(RespondError::InvalidHeader),
            _ => Ok(()),
        }
    }
}

/// How a streamed body departs from the length it declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mismatch {
    /// More bytes than declared: a piece crosses the length.
    Over,
    /// The end comes short of the length.
    Under,
}

/// How the application answers a request, decided when it arrives.
#[derive(Clone, Debug)]
enum Plan {
    Whole,
    Stream(Producer),
    Upgrade,
}

/// Most bytes a producer offers at once.
const MAX_OFFER: usize = 8 * 1024;

/// Bytes a producer offers however little room core reports.
const MIN_OFFER: usize = 64;

/// A whole answer's body of `len` bytes: dots, shared, not made per answer
/// (was: the token, then dots). No check reads a whole body's bytes; a
/// streamed body's are checked.
fn filler(len: usize) -> Bytes {
    static DOTS: [u8; 65 * 1024] = [b'.'; 65 * 1024];
    Bytes::from_static(&DOTS[..len])
}

/// A streamed response body, produced a piece at a time.
#[derive(Clone, Debug)]
struct Producer {
    /// The body it means to produce (declared, when `known`).
    total: usize,
    known: bool,
    /// Where it stops producing without ending the stream, if it does.
    stop_at: Option<usize>,
    mismatch: Option<Mismatch>,
    piece: usize,
    gap: Duration,
    /// Body bytes core took.
    sent: usize,
    /// Core took less than offered: the next piece waits for
    /// `StreamWritable`.
    blocked: bool,
}

impl Producer {
    /// Where production ends: the declared total, or past or short of it.
    fn end_at(&self) -> usize {
        match self.mismatch {
            None => self.total,
            Some(Mismatch::Over) => self.total + 1 + self.total % 7,
            Some(Mismatch::Under) => self.total / 2,
        }
    }
}

/// The next thing a producer does.
#[derive(Clone, Debug)]
pub enum Piece {
    /// Offer these bytes; whether core must refuse them for crossing the
    /// declared length.
    Data(&'static [u8], bool),
    /// End the stream; whether core must refuse the end as short.
    End(bool),
    /// Stop producing, without ending the stream.
    Stop,
}

/// What a producer does after core took a piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The next piece after this gap.
    After(Duration),
    /// The end, at once: in the same step as the last piece, so core still
    /// holds that piece (core bug 3, crate docs).
    EndNow,
    /// Wait for `StreamWritable`.
    Writable,
    /// The stream is over (ended, broken or gone).
    Over,
}

/// A streamed request body being read.
#[derive(Clone, Copy, Debug)]
struct Upload {
    no: usize,
    len: usize,
    read: usize,
    /// A read is scheduled after a gap.
    waiting: bool,
    done: bool,
}

/// An upgraded connection the application echoes.
#[derive(Clone, Debug)]
pub struct Echo {
    pub conn: ConnId,
    /// Echo bytes the socket had no room for yet.
    pub outbox: Vec<u8>,
    /// Bytes echoed so far.
    pub echoed: u64,
    /// The drain's stop notice came, and the application heeds it: it
    /// shuts its write side once the outbox is empty.
    pub stopping: bool,
    /// It shut its write side.
    pub shut: bool,
    /// It ignores the stop notice (the deadline cuts it).
    pub ignores_stop: bool,
}

/// A request the application holds.
#[derive(Clone, Debug)]
struct Held {
    token: String,
    fault: Option<Fault>,
    big: bool,
    plan: Plan,
    /// Its body streams; `upload` when the application reads it.
    streams_body: bool,
    upload: Option<Upload>,
}

/// What the application met, for the runner's coverage counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct AppCover {
    /// Streams ended by the application, and accepted by core.
    pub streams_ended: u64,
    /// Producers that stopped without ending their stream.
    pub producers_stopped: u64,
    /// Pieces core took less of than offered (back-pressure).
    pub stream_backpressure: u64,
    /// Declared lengths broken, and refused by core.
    pub length_mismatches: u64,
    /// Streamed request bodies read to their end.
    pub uploads_read: u64,
    /// Upgraded connections that echoed at least one byte.
    pub upgrades_echoed: u64,
    /// Upgraded connections the application closed after the stop notice.
    pub upgrades_stopped: u64,
}

/// The application: the requests it holds, and how it answers.
pub struct App {
    holding: BTreeMap<RequestId, Held>,
    /// Upgraded connections, by the world's connection number.
    echoes: BTreeMap<usize, Echo>,
    instant_percent: u64,
    delay: Duration,
    large_percent: u64,
    fault_percent: u64,
    stream_percent: u64,
    stop_percent: u64,
    mismatch_percent: u64,
    stream_gap: Duration,
    read_gap: Duration,
    unread_percent: u64,
    ignore_stop_percent: u64,
    handed: u64,
    cover: AppCover,
}

impl App {
    /// An application shaped by `knobs`; the successor's (which never
    /// drains, so never stops a producer: only a deadline could end it) if
    /// `successor`.
    pub fn new(knobs: &Knobs, successor: bool) -> App {
        App {
            holding: BTreeMap::new(),
            echoes: BTreeMap::new(),
            instant_percent: knobs.app_instant_percent,
            delay: knobs.app_delay,
            large_percent: knobs.large_response_percent,
            fault_percent: knobs.app_fault_percent,
            stream_percent: knobs.stream_percent,
            stop_percent: if successor {
                0
            } else {
                knobs.stream_stop_percent
            },
            mismatch_percent: knobs.stream_mismatch_percent,
            stream_gap: knobs.stream_gap,
            read_gap: knobs.upload_read_gap,
            unread_percent: knobs.upload_unread_percent,
            ignore_stop_percent: knobs.upgrade_ignore_stop_percent,
            handed: 0,
            cover: AppCover::default(),
        }
    }

    /// Requests core handed to the application.
    pub fn handed(&self) -> u64 {
        self.handed
    }

    /// What the application met.
    pub fn cover(&self) -> AppCover {
        self.cover
    }

    /// `Event::Request`: checks the request core shows against what client
    /// `owner` (who made connection `k`) sent, and decides how and when to
    /// answer. `streams_body`: core hands its body over in pieces. `None`
    /// when the request is not one a client sent (a failure).
    #[allow(clippy::too_many_arguments)]
    pub fn receive(
        &mut self,
        id: RequestId,
        k: usize,
        owner: usize,
        req: Request<'_>,
        streams_body: bool,
        clients: &Clients,
        env: &mut Env,
    ) -> Option<Got> {
        let path = req.path();
        let body = req.body();
        let Some((token, (client, no, attempt))) = path
            .strip_prefix("/r/")
            .and_then(|token| Some((token, request::parse_token(token)?)))
            .filter(|&(_, (ci, no, _))| clients.req(ci, no).is_some())
        else {
            env.fail(Failure::Safety(format!(
                "integrity: k{k}: the application got a request no client sent: {path:?}"
            )));
            return None;
        };
        let want = clients.req(client, no).expect("filtered above");
        if client != owner || want.garbage {
            env.fail(Failure::Safety(format!(
                "integrity: k{k}: request {path} arrived on another client's connection"
            )));
            return None;
        }
        let whole_len = if streams_body { 0 } else { want.shape.body_len };
        if !request::is_body(no, whole_len, body) {
            env.fail(Failure::Safety(format!(
                "integrity: k{k}: request {path} body corrupted ({} bytes, streams: {streams_body})",
                body.len()
            )));
            return None;
        }
        // Echoed as the client wrote it (not rebuilt from its numbers).
        let token = token.to_owned();
        trace!(env, "app got {token} on k{k} ({} body bytes)", body.len());
        self.handed += 1;
        let shape = want.shape;
        let fault = (!shape.upgrade && env.rng.percent(self.fault_percent))
            .then(|| Fault::ALL[env.rng.below(Fault::ALL.len() as u64) as usize]);
        if let Some(f) = fault {
            trace!(env, "app will fail {token}: {f:?}");
        }
        let plan = if shape.upgrade && fault.is_none() {
            Plan::Upgrade
        } else if fault.is_none() && (shape.big_stream || env.rng.percent(self.stream_percent)) {
            Plan::Stream(self.producer(shape.big_stream, env))
        } else {
            Plan::Whole
        };
        let reads_body = streams_body && !env.rng.percent(self.unread_percent);
        let upload = reads_body.then_some(Upload {
            no,
            len: shape.body_len,
            read: 0,
            waiting: false,
            done: false,
        });
        // A body read first is answered once it ended.
        let delay = if reads_body {
            None
        } else {
            (!env.rng.percent(self.instant_percent)).then(|| env.rng.upto(self.delay))
        };
        if let Plan::Stream(p) = &plan {
            trace!(
                env,
                "app will stream {token}: {} bytes{}, pieces of {}{}{}",
                p.total,
                if p.known { " declared" } else { "" },
                p.piece,
                p.stop_at
                    .map_or(String::new(), |at| format!(", stops at {at}")),
                p.mismatch.map_or(String::new(), |m| format!(", {m:?}")),
            );
        }
        self.holding.insert(
            id,
            Held {
                token: token.clone(),
                fault,
                big: shape.big_response,
                plan,
                streams_body,
                upload,
            },
        );
        Some(Got {
            client,
            no,
            attempt,
            token,
            raw_len: want.raw_len,
            fault,
            delay,
            http10: shape.http10,
            asks_close: shape.close,
            streams_body,
            reads_body,
        })
    }

    /// How a streamed response will go.
    fn producer(&self, big: bool, env: &mut Env) -> Producer {
        let total = if big {
            env.rng.log(16 * 1024, 256 * 1024) as usize
        } else {
            env.rng.log(1, 32 * 1024) as usize
        };
        let known = env.rng.percent(50);
        let stop_at = env
            .rng
            .percent(self.stop_percent)
            .then(|| env.rng.size(0, total));
        let mismatch =
            (known && stop_at.is_none() && env.rng.percent(self.mismatch_percent)).then(|| {
                if env.rng.percent(50) {
                    Mismatch::Over
                } else {
                    Mismatch::Under
                }
            });
        Producer {
            total,
            known,
            stop_at,
            mismatch,
            piece: (total / env.rng.size(1, 20)).max(1),
            gap: env.rng.upto(self.stream_gap),
            sent: 0,
            blocked: false,
        }
    }

    /// The answer to `id` (status 200, or now and then 204 without a body;
    /// its token in `x-req`) — or the failure chosen for it. `body_unread`
    /// says whether it comes before its streamed body was read to the end.
    pub fn answer(&mut self, id: RequestId, env: &mut Env) -> Option<(Answer, bool)> {
        let held = self.holding.get(&id)?;
        let fault = held.fault;
        let body_unread = held.streams_body && !held.upload.is_some_and(|u| u.done);
        let kind = match &held.plan {
            Plan::Upgrade => AnswerKind::Upgrade { headers: UPGRADE },
            Plan::Stream(p) => AnswerKind::Stream {
                status: 200,
                headers: STREAM,
                length: if p.known {
                    BodyLength::Known(p.total as u64)
                } else {
                    BodyLength::Unknown
                },
                total: p.total,
            },
            Plan::Whole => AnswerKind::Whole(match fault {
                None => {
                    let len = if held.big || env.rng.percent(self.large_percent) {
                        env.rng.size(16 * 1024, 64 * 1024)
                    } else {
                        env.rng.size(0, 200)
                    };
                    let status = if !held.big && env.rng.percent(5) {
                        204
                    } else {
                        200
                    };
                    Some(Response {
                        status,
                        headers: TOKEN,
                        body: filler(held.token.len() + len),
                    })
                }
                Some(Fault::BadStatus) => Some(Response {
                    status: if env.rng.percent(50) { 99 } else { 600 },
                    headers: TOKEN,
                    body: Bytes::from_static(b"never sent"),
                }),
                Some(Fault::BadHeader) => Some(Response {
                    status: 200,
                    headers: BAD_HEADER,
                    body: Bytes::from_static(b"never sent"),
                }),
                Some(Fault::Dropped) => None,
            }),
        };
        // A stream's producer stays held until the stream is over; the
        // others give up their token.
        let token = match kind {
            AnswerKind::Stream { .. } => held.token.clone(),
            _ => self.holding.remove(&id).expect("held above").token,
        };
        Some((Answer { token, kind, fault }, body_unread))
    }

    /// Core refused to start the stream of `id` (the request was gone).
    pub fn stream_refused(&mut self, id: RequestId) {
        self.holding.remove(&id);
    }

    /// The gap before a stream's first piece.
    pub fn stream_gap(&mut self, id: RequestId, env: &mut Env) -> Duration {
        match self.holding.get(&id).map(|h| &h.plan) {
            Some(Plan::Stream(p)) => env.rng.upto(p.gap),
            _ => Duration::ZERO,
        }
    }

    /// The next thing the producer of `id` does (`None`: no producer),
    /// given the `room` core reports (`stream_room`).
    pub fn next_piece(&mut self, id: RequestId, room: usize, env: &mut Env) -> Option<Piece> {
        let held = self.holding.get_mut(&id)?;
        let Plan::Stream(p) = &mut held.plan else {
            return None;
        };
        if p.stop_at == Some(p.sent) {
            trace!(env, "app stops producing {} at {}", held.token, p.sent);
            self.cover.producers_stopped += 1;
            self.holding.remove(&id);
            return Some(Piece::Stop);
        }
        let end = p.stop_at.unwrap_or(p.end_at());
        if p.sent >= end {
            return Some(Piece::End(p.mismatch == Some(Mismatch::Under)));
        }
        // A held-back producer offers its piece again and again: at most
        // twice the room (and 8 KiB) keeps that affordable, and still
        // offers more than core may take.
        let n = p
            .piece
            .min(end - p.sent)
            .min(MAX_OFFER)
            .min((room * 2).max(MIN_OFFER));
        let crosses = p.known && p.sent + n > p.total;
        Some(Piece::Data(
            request::stream_bytes(&held.token, p.sent, n),
            crosses,
        ))
    }

    /// Core took `taken` of the `offered` bytes of `id`'s stream (or refused
    /// them, or the end): what the producer does next.
    pub fn piece_done(
        &mut self,
        id: RequestId,
        offered: usize,
        result: Result<usize, StreamError>,
        env: &mut Env,
    ) -> Next {
        let Some(held) = self.holding.get_mut(&id) else {
            return Next::Over;
        };
        let Plan::Stream(p) = &mut held.plan else {
            return Next::Over;
        };
        match result {
            Ok(taken) if offered > 0 => {
                p.sent += taken;
                if taken < offered {
                    self.cover.stream_backpressure += 1;
                    p.blocked = true;
                    return Next::Writable;
                }
                let last = p.sent == p.end_at() && p.stop_at != Some(p.sent);
                if last {
                    return Next::EndNow;
                }
                Next::After(env.rng.upto(p.gap))
            }
            Ok(_) => {
                self.cover.streams_ended += 1;
                self.holding.remove(&id);
                Next::Over
            }
            Err(e) => {
                if e == StreamError::LengthMismatch {
                    self.cover.length_mismatches += 1;
                }
                self.holding.remove(&id);
                Next::Over
            }
        }
    }

    /// `StreamWritable` for `id`: whether its producer was held back (its
    /// next piece goes now).
    pub fn writable(&mut self, id: RequestId) -> bool {
        match self.holding.get_mut(&id).map(|h| &mut h.plan) {
            Some(Plan::Stream(p)) => std::mem::replace(&mut p.blocked, false),
            _ => false,
        }
    }

    /// What arrived of `id`'s streamed body: checks it against what the
    /// client sent, and returns how much the application uses now, and
    /// whether it reads on later (after its gap) instead of at once.
    /// `None` when it does not read this body.
    pub fn read_upload(
        &mut self,
        id: RequestId,
        data: &[u8],
        done: bool,
        k: usize,
        env: &mut Env,
    ) -> Option<(usize, bool)> {
        let held = self.holding.get_mut(&id)?;
        let up = held.upload.as_mut()?;
        if up.waiting || up.done {
            return None;
        }
        if !request::is_body_at(up.no, up.read, data) {
            env.fail(Failure::Safety(format!(
                "integrity: k{k}: streamed body of {} corrupted at {}",
                held.token, up.read
            )));
            return None;
        }
        up.read += data.len();
        if done {
            if up.read != up.len {
                env.fail(Failure::Safety(format!(
                    "integrity: k{k}: streamed body of {} ended after {} bytes, not {}",
                    held.token, up.read, up.len
                )));
                return None;
            }
            up.done = true;
            self.cover.uploads_read += 1;
            return Some((data.len(), false));
        }
        let slow = !self.read_gap.is_zero() && !data.is_empty();
        up.waiting = slow;
        Some((data.len(), slow))
    }

    /// A slow reader's gap is over: whether it reads `id`'s body again.
    pub fn read_again(&mut self, id: RequestId) -> bool {
        match self.holding.get_mut(&id).and_then(|h| h.upload.as_mut()) {
            Some(up) if up.waiting => {
                up.waiting = false;
                true
            }
            _ => false,
        }
    }

    /// How long a slow reader waits before reading on.
    pub fn read_gap(&self, env: &mut Env) -> Duration {
        env.rng.upto(self.read_gap)
    }

    /// Whether `id` is a request whose body the application reads, and has
    /// read to its end (so its answer may be scheduled).
    pub fn upload_done(&self, id: RequestId) -> bool {
        self.holding
            .get(&id)
            .and_then(|h| h.upload)
            .is_some_and(|u| u.done)
    }

    /// Core's upgraded connection `k` (`conn`): the application echoes it.
    pub fn upgraded(&mut self, k: usize, conn: ConnId, env: &mut Env) {
        let ignores_stop = env.rng.percent(self.ignore_stop_percent);
        self.echoes.insert(
            k,
            Echo {
                conn,
                outbox: Vec::new(),
                echoed: 0,
                stopping: false,
                shut: false,
                ignores_stop,
            },
        );
    }

    /// The upgraded connection `k`, if the application has it.
    pub fn echo(&mut self, k: usize) -> Option<&mut Echo> {
        self.echoes.get_mut(&k)
    }

    /// Core closed connection `k`: an upgraded one is forgotten.
    pub fn closed(&mut self, k: usize) {
        if let Some(e) = self.echoes.remove(&k) {
            self.cover.upgrades_echoed += u64::from(e.echoed > 0);
        }
    }

    /// The application closed upgraded connection `k` after the stop notice.
    pub fn stopped_by_notice(&mut self) {
        self.cover.upgrades_stopped += 1;
    }
}
