//! What the stateful targets share: reading back what core wrote on a
//! connection, the way a client would, and the application's side of the
//! conversation.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::response::{Response, ResponseParser};

/// The interim response core sends for `Expect: 100-continue`.
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The header the fuzzing application puts on every response, naming the
/// request it answers; core's own rejections do not carry it.
pub(super) const SEQ_HEADER: &str = "X-Seq";

/// The status core answers with when the application fails; core's own
/// rejections never use it, so a 500 without `X-Seq` is such an answer.
const APP_FAULT_STATUS: u16 = 500;

/// The application's `X-Seq` on a response: which request it answers.
/// `None` for core's own responses (rejections, 100 Continue, and the 500
/// core writes in place of an application fault).
fn seq_of(r: &Response) -> Option<u32> {
    r.header(SEQ_HEADER)
        .map(|v| v.parse().expect("X-Seq is a number"))
}

/// What the application did on one connection, which reading its answers
/// back needs.
pub(super) struct AppLog<'a> {
    /// By request seq: whether the request was `HEAD`.
    pub is_head: &'a [bool],
    /// The requests it answered (validly or not), in request order — the
    /// order their responses leave in, whatever order the answers came in.
    pub answered: &'a [u32],
    /// The requests it failed, which core answers with 500 in their place.
    pub faulted: &'a [u32],
    /// The requests whose response it streamed (their framing is core's
    /// choice: a length, chunked, or the close).
    pub streamed: &'a [u32],
    /// By request seq: whether the request was HTTP/1.0 (never sent
    /// chunked, never switched). Needed only for streamed and switched
    /// requests.
    pub http10: &'a [bool],
}

impl AppLog<'_> {
    fn http10(&self, seq: u32) -> bool {
        self.http10.get(seq as usize).copied().unwrap_or(false)
    }
}

/// One response read back, and the request it answers, if the application
/// answered it: by its `X-Seq`, or, for a 500 without one where the next
/// answer due was a fault, that request. `None` for core's own responses.
pub(super) struct Answered {
    pub response: Response,
    pub seq: Option<u32>,
}

/// What core wrote on one connection, read back with the kit's parser and
/// checked against the framing core promises beyond HTTP's syntax.
#[derive(Clone, Debug)]
pub(super) struct Wire {
    parser: ResponseParser,
    /// Application answers among the final heads read so far.
    answers: usize,
    /// The request each final head read answers, until its response is
    /// complete.
    heads: VecDeque<Option<u32>>,
}

impl Wire {
    pub fn new() -> Wire {
        Wire {
            parser: ResponseParser::without_bodies(),
            answers: 0,
            heads: VecDeque::new(),
        }
    }

    /// Feeds bytes written on the connection; returns the responses they
    /// complete. Which request a response answers decides whether it has a
    /// body (not for `HEAD`), so it is settled as its head is read. Panics
    /// when core wrote something that is not a well-formed response with
    /// the framing core promises.
    pub fn feed(&mut self, bytes: &[u8], app: &AppLog<'_>) -> Vec<Answered> {
        let mut out = Vec::new();
        let (answers, heads) = (&mut self.answers, &mut self.heads);
        let parsed = self.parser.feed_with(bytes, &mut out, |head| {
            let next = app.answered.get(*answers).copied();
            let app_fault = head.status == APP_FAULT_STATUS
                && next.is_some_and(|seq| app.faulted.contains(&seq));
            let seq = seq_of(head).or(next.filter(|_| app_fault));
            let streamed = seq.filter(|seq| app.streamed.contains(seq));
            check_final_head(head, streamed.map(|seq| app.http10(seq)));
            *answers += usize::from(seq.is_some());
            heads.push_back(seq);
            seq.is_some_and(|seq| app.is_head[seq as usize])
        });
        if let Err(e) = parsed {
            panic!("core wrote a malformed response: {e}");
        }
        self.answered(out, app)
    }

    /// Core closed its side: a body that runs until the close is complete
    /// (an HTTP/1.0 client's streamed body of unknown length).
    pub fn finish(&mut self, app: &AppLog<'_>) -> Vec<Answered> {
        let mut out = Vec::new();
        if let Err(e) = self.parser.finish(&mut out) {
            panic!("core closed a connection mid-response: {e}");
        }
        self.answered(out, app)
    }

    /// Pairs complete responses with the requests they answer.
    fn answered(&mut self, out: Vec<Response>, app: &AppLog<'_>) -> Vec<Answered> {
        let mut answered = Vec::with_capacity(out.len());
        for response in out {
            let seq = if response.status == 101 {
                // The switch is the application's answer: nothing follows
                // (the parser refuses bytes after it), and only an HTTP/1.1
                // request may switch (RFC 9110 §7.8).
                let seq = seq_of(&response).expect("a 101 carries the application's X-Seq");
                assert!(!app.http10(seq), "an HTTP/1.0 request was switched");
                self.answers += 1;
                Some(seq)
            } else if response.is_interim() {
                // With the status line and field lines parsed strictly, this
                // is the whole of CONTINUE, byte for byte.
                assert!(
                    response.status == 100
                        && response.reason() == "Continue"
                        && response.headers().next().is_none(),
                    "malformed interim response {response:?}"
                );
                assert_eq!(response.wire_len, CONTINUE.len());
                None
            } else {
                self.heads
                    .pop_front()
                    .expect("a final response had its head read")
            };
            answered.push(Answered { response, seq });
        }
        answered
    }

    /// The response whose head was read and whose body is still to come:
    /// the request it answers, and whether it closes.
    pub fn pending_head(&self) -> Option<(Option<u32>, bool)> {
        let r = self.parser.pending()?;
        Some((*self.heads.front()?, r.close))
    }

    /// Whether part of a response has been written but not all of it.
    pub fn mid_response(&self) -> bool {
        self.parser.mid_response()
    }
}

/// What core promises of every final response head: a status in 200..=599,
/// exactly one `Date`, at most one `Connection`, no framing header of the
/// application's, and a `Content-Length` unless the status forbids a body —
/// but for a streamed body (`streamed` says whether its request was
/// HTTP/1.0), which may be chunked (never to HTTP/1.0) or, to HTTP/1.0
/// only, ended by the close.
fn check_final_head(r: &Response, streamed: Option<bool>) {
    let status = r.status;
    assert!(
        (200..=599).contains(&status),
        "final status {status} out of range"
    );
    assert_eq!(
        r.headers_named("date").count(),
        1,
        "a response needs exactly one Date"
    );
    assert!(
        r.headers_named("connection").count() <= 1,
        "two Connection headers"
    );
    let chunked = r.header("transfer-encoding").is_some();
    for (name, _) in r.headers() {
        assert!(
            !name.eq_ignore_ascii_case("keep-alive"),
            "core let the application set {name}"
        );
    }
    assert!(
        r.headers_named("transfer-encoding").count() <= usize::from(streamed.is_some()),
        "core let the application set Transfer-Encoding"
    );
    let length = r.header("content-length");
    if status == 204 || status == 304 {
        assert!(
            length.is_none() && !chunked,
            "{status} with a body's framing"
        );
        return;
    }
    match streamed {
        None => assert!(length.is_some(), "a response without Content-Length"),
        Some(http10) => {
            assert!(!(chunked && http10), "chunked to an HTTP/1.0 client");
            assert!(
                length.is_some() || chunked || (http10 && r.close),
                "a streamed response with neither length nor chunks, to an HTTP/1.1 client or without Connection: close"
            );
        }
    }
}

/// Whether the client asked for the connection to close after `req`
/// (RFC 9112 §9.6): a `close` connection option, or HTTP/1.0 without
/// `keep-alive`. The response must then carry `Connection: close`.
pub(super) fn asks_to_close(req: &ebb_core::Request<'_>) -> bool {
    let mut close = false;
    let mut keep_alive = false;
    for (name, value) in req.headers() {
        if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    close || (req.version() == ebb_core::Version::Http10 && !keep_alive)
}

/// Whether `req` asks to switch protocols (RFC 9110 §7.8): an HTTP/1.1
/// request with an `upgrade` connection option and an `Upgrade` field.
pub(super) fn asks_to_upgrade(req: &ebb_core::Request<'_>) -> bool {
    let mut option = false;
    let mut field = false;
    for (name, value) in req.headers() {
        if name.eq_ignore_ascii_case("connection") {
            option |= value
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case("upgrade") {
            field |= !value.trim_ascii().is_empty();
        }
    }
    option && field && req.version() == ebb_core::Version::Http11
}

/// Response headers an application might send: ordinary ones, and ones core
/// owns and must drop (`Content-Length`, `Connection`, `Transfer-Encoding`).
const EXTRA_HEADERS: [(&str, &str); 7] = [
    ("Content-Type", "text/plain"),
    ("Cache-Control", "no-store"),
    ("X-Empty", ""),
    ("Content-Length", "99"),
    ("Connection", "keep-alive"),
    ("Transfer-Encoding", "chunked"),
    ("connection", "close"),
];

/// A valid response from the fuzzing application to request `seq`.
pub(super) struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Answer {
    /// Builds an answer from small choices: `status` in 200..=599, `extras`
    /// as a bit set over [`EXTRA_HEADERS`], `body_len` bytes of body.
    pub fn new(seq: u32, status: u16, extras: u8, body_len: usize) -> Answer {
        let mut headers = Vec::with_capacity(1 + extras.count_ones() as usize);
        headers.push((SEQ_HEADER, seq.to_string()));
        for (i, (name, value)) in EXTRA_HEADERS.iter().enumerate() {
            if extras & (1 << i) != 0 {
                headers.push((name, (*value).to_owned()));
            }
        }
        Answer {
            status,
            headers,
            body: body(body_len),
        }
    }
}

/// `len` bytes of a body that cannot be mistaken for a response head: a
/// slice of one alphabet, built once and shared.
pub(super) fn body(len: usize) -> Bytes {
    static ALPHABET: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let all = ALPHABET.get_or_init(|| (0..32 * 1024).map(|i| b'a' + (i % 26) as u8).collect());
    if len <= all.len() {
        all.slice(..len)
    } else {
        (0..len).map(|i| b'a' + (i % 26) as u8).collect()
    }
}

/// Faults of the application: invalid responses, which core must refuse and
/// answer with 500 in their place, and a request it drops unanswered (a
/// panic, a lost responder), which core answers with 500 too.
pub(super) enum BadAnswer {
    Status(u16),
    HeaderName,
    HeaderValue,
    Dropped,
}

impl BadAnswer {
    pub fn pick(choice: usize) -> BadAnswer {
        match choice % 7 {
            0 => BadAnswer::Status(100),
            1 => BadAnswer::Status(199),
            2 => BadAnswer::Status(600),
            3 => BadAnswer::Status(0),
            4 => BadAnswer::HeaderName,
            5 => BadAnswer::HeaderValue,
            _ => BadAnswer::Dropped,
        }
    }

    /// Gives this fault as the answer to request `id`, and checks core
    /// refuses an invalid response. Either way core answers 500 itself.
    pub fn attempt(
        &self,
        server: &mut ebb_core::Server,
        id: ebb_core::RequestId,
        now: ebb_core::Time,
    ) {
        if let BadAnswer::Dropped = self {
            return server.handle_app_failure(id, now);
        }
        let result =
            server.handle_response(id, self.status(), self.headers(), bytes::Bytes::new(), now);
        assert_eq!(result, Err(self.expected()));
    }

    fn status(&self) -> u16 {
        match self {
            BadAnswer::Status(s) => *s,
            _ => 200,
        }
    }

    fn headers(&self) -> Vec<(&'static str, &'static str)> {
        match self {
            BadAnswer::Status(_) | BadAnswer::Dropped => vec![],
            BadAnswer::HeaderName => vec![("Bad Name", "v")],
            BadAnswer::HeaderValue => vec![("X", "a\r\nSet-Cookie: evil")],
        }
    }

    fn expected(&self) -> ebb_core::RespondError {
        match self {
            BadAnswer::Status(_) => ebb_core::RespondError::InvalidStatus,
            _ => ebb_core::RespondError::InvalidHeader,
        }
    }
}
