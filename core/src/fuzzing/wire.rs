//! Reading back what core wrote on a connection, the way a client would, and
//! the application's side of the conversation shared by the targets.

use bytes::Bytes;

/// The interim response core sends for `Expect: 100-continue`.
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The header the fuzzing application puts on every response, naming the
/// request it answers; core's own rejections do not carry it.
pub(super) const SEQ_HEADER: &str = "X-Seq";

/// One response as it appeared on the wire.
#[derive(Debug)]
pub(super) struct WireResponse {
    pub status: u16,
    /// The application's `X-Seq`: which request this answers. `None` for
    /// core's own responses (rejections and 100 Continue).
    pub seq: Option<u32>,
    /// Whether it carried `Connection: close`.
    pub close: bool,
    /// Bytes of the whole response, head and body.
    pub len: usize,
}

/// The status core answers with when the application fails; core's own
/// rejections never use it, so a 500 without `X-Seq` is such an answer.
pub(super) const APP_FAULT_STATUS: u16 = 500;

/// Parses the response at the start of `buf`; `None` while it is incomplete.
/// `is_head(seq)` says whether request `seq` used `HEAD` (its response has no
/// body). Panics when core wrote something that is not a well-formed response
/// with the framing core promises.
pub(super) fn parse_response(buf: &[u8], is_head: impl Fn(u32) -> bool) -> Option<WireResponse> {
    let head_len = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = &buf[..head_len - 4];
    let text = std::str::from_utf8(head).unwrap_or_else(|_| {
        panic!(
            "response head is not UTF-8: {:?}",
            String::from_utf8_lossy(head)
        )
    });
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    assert_eq!(
        status_line.as_bytes().get(12),
        Some(&b' '),
        "bad status line {status_line:?}"
    );
    if status == 100 {
        assert_eq!(&buf[..head_len], CONTINUE, "malformed interim response");
        return Some(WireResponse {
            status,
            seq: None,
            close: false,
            len: head_len,
        });
    }
    assert!(
        (200..=599).contains(&status),
        "final status {status} out of range"
    );
    let mut content_length = None;
    let mut dates = 0;
    let mut connections = 0;
    let mut close = false;
    let mut seq = None;
    for line in lines {
        let (name, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("bad header line {line:?}"));
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':'),
            "bad header name {name:?}"
        );
        if name.eq_ignore_ascii_case("content-length") {
            assert!(content_length.is_none(), "two Content-Length headers");
            content_length = Some(
                value
                    .parse::<usize>()
                    .unwrap_or_else(|_| panic!("bad Content-Length {value:?}")),
            );
        } else if name.eq_ignore_ascii_case("date") {
            dates += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            connections += 1;
            close = value == "close";
        } else if name.eq_ignore_ascii_case(SEQ_HEADER) {
            seq = Some(value.parse().expect("X-Seq is a number"));
        } else {
            assert!(
                !name.eq_ignore_ascii_case("transfer-encoding")
                    && !name.eq_ignore_ascii_case("keep-alive"),
                "core let the application set {name}"
            );
        }
    }
    assert_eq!(dates, 1, "a response needs exactly one Date");
    assert!(connections <= 1, "two Connection headers");
    let body_len = if status == 204 || status == 304 {
        assert_eq!(content_length, None, "{status} with Content-Length");
        0
    } else {
        let announced = content_length.expect("a response without Content-Length");
        if seq.is_some_and(&is_head) {
            0
        } else {
            announced
        }
    };
    (buf.len() >= head_len + body_len).then_some(WireResponse {
        status,
        seq,
        close,
        len: head_len + body_len,
    })
}

/// Whether the client asked for the connection to close after `req`
/// (RFC 9112 §9.6): a `close` connection option, or HTTP/1.0 without
/// `keep-alive`. The response must then carry `Connection: close`.
pub(super) fn asks_to_close(req: &crate::Request<'_>) -> bool {
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
    close || (req.version() == crate::Version::Http10 && !keep_alive)
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
        let mut headers = vec![(SEQ_HEADER, seq.to_string())];
        for (i, (name, value)) in EXTRA_HEADERS.iter().enumerate() {
            if extras & (1 << i) != 0 {
                headers.push((name, (*value).to_owned()));
            }
        }
        // A body that cannot be mistaken for a response head.
        let body: Vec<u8> = (0..body_len).map(|i| b'a' + (i % 26) as u8).collect();
        Answer {
            status,
            headers,
            body: Bytes::from(body),
        }
    }
}

/// Faults of the application: invalid responses, which core must refuse and
/// answer with 500 in their place, and a request it drops unanswered (a
/// panic, a lost responder), which core answers with 500 too.
/// without consuming the request.
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
    pub fn attempt(&self, server: &mut crate::Server, id: crate::RequestId, now: crate::Time) {
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

    fn expected(&self) -> crate::RespondError {
        match self {
            BadAnswer::Status(_) => crate::RespondError::InvalidStatus,
            _ => crate::RespondError::InvalidHeader,
        }
    }
}
