//! The clients' side of HTTP/1.1: the requests they write, and what the
//! world reads from a response core wrote. Responses themselves are parsed by
//! the test kit's one parser ([`ebb_testkit::response`]).

use std::sync::OnceLock;

use ebb_testkit::response::Response;
use ebb_testkit::rng::Rng;

/// The token that names one attempt of one request: carried in the request
/// target (`/r/<token>`) and echoed by the application in `x-req`.
pub fn token(client: usize, no: usize, attempt: u32) -> String {
    let mut t = String::with_capacity(24);
    for (i, n) in [client, no, attempt as usize].into_iter().enumerate() {
        if i > 0 {
            t.push('.');
        }
        // Pushed as characters: no UTF-8 check of the whole token after.
        t.extend(Digits::of::<10>(n).get().iter().map(|&d| char::from(d)));
    }
    t
}

/// Appends `n` in base `RADIX` (10, or 16 in lower case).
fn push_number<const RADIX: usize>(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(Digits::of::<RADIX>(n).get());
}

/// A number's digits, made by hand: `format!` costs several times more, and
/// every request and response makes a token, every request a head and some
/// chunk sizes. The radix is a constant, so dividing by it is a multiply.
struct Digits {
    digits: [u8; 20],
    at: usize,
}

impl Digits {
    fn of<const RADIX: usize>(mut n: usize) -> Digits {
        let mut d = Digits {
            digits: [0; 20],
            at: 20,
        };
        loop {
            d.at -= 1;
            d.digits[d.at] = b"0123456789abcdef"[n % RADIX];
            n /= RADIX;
            if n == 0 {
                return d;
            }
        }
    }

    fn get(&self) -> &[u8] {
        &self.digits[self.at..]
    }
}

/// Parses a token back into (client, request number, attempt).
pub fn parse_token(t: &str) -> Option<(usize, usize, u32)> {
    let mut it = t.split('.');
    let r = (
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    );
    it.next().is_none().then_some(r)
}

/// The body a client sends with request `no`: the alphabet over and over,
/// from a letter fixed by `no`, so the application can check it arrived
/// intact.
pub fn body(no: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        out.extend_from_slice(alphabet_run(no, out.len(), len - out.len()));
    }
    out
}

/// Whether `got` is bytes `from..from + got.len()` of the body of request
/// `no`.
pub fn is_body_at(no: usize, from: usize, got: &[u8]) -> bool {
    // Every part starts a whole number of alphabets after `from`.
    got.chunks(ALPHABETS.len() - 26)
        .all(|part| *part == *alphabet_run(no, from, part.len()))
}

/// Whether `got` is exactly the body of request `no` with `len` bytes.
pub fn is_body(no: usize, len: usize, got: &[u8]) -> bool {
    got.len() == len && is_body_at(no, 0, got)
}

/// `N` bytes running through the `cycle` bytes from `first` on, again and
/// again: bodies and messages are compared and copied from such a table a
/// run at a time, not computed a byte at a time.
const fn repeated<const N: usize>(first: u8, cycle: usize) -> [u8; N] {
    let mut t = [0; N];
    let mut i = 0;
    while i < N {
        t[i] = first + (i % cycle) as u8;
        i += 1;
    }
    t
}

/// The alphabet, repeated.
const ALPHABETS: [u8; 26 * 160] = repeated(b'a', 26);

/// Up to `len` bytes of request `no`'s body from byte `from` (at most a
/// run of alphabets).
fn alphabet_run(no: usize, from: usize, len: usize) -> &'static [u8] {
    let start = (no * 7 + from) % 26;
    &ALPHABETS[start..start + len.min(ALPHABETS.len() - 26)]
}

/// Bytes `from..from + len` of the body the application streams for the
/// request named `token`: a window on one fixed pseudo-random pattern,
/// placed by the token, so a client can tell that it got exactly the bytes
/// produced, in order. A slice of a table built once, not bytes made per
/// piece: producing and checking megabytes costs a copy and a compare.
pub fn stream_bytes(token: &str, from: usize, len: usize) -> &'static [u8] {
    assert!(
        len <= STREAM_PERIOD,
        "a piece longer than the stream pattern"
    );
    let start = (stream_seed(token) + from) % STREAM_PERIOD;
    &stream_table()[start..start + len]
}

/// Whether `got` is the start of the body streamed for `token`.
pub fn is_stream_prefix(token: &str, got: &[u8]) -> bool {
    got.chunks(STREAM_PERIOD)
        .enumerate()
        .all(|(n, part)| *part == *stream_bytes(token, n * STREAM_PERIOD, part.len()))
}

/// The pattern repeats after this many bytes: four times the longest
/// stream (256 KiB and a few bytes past a declared length), so no byte of
/// one stream stands where an equal one of the same stream is expected.
const STREAM_PERIOD: usize = 1 << 20;

/// The pattern, twice over: any window of up to one period is contiguous.
fn stream_table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rng = Rng::new(0x5eed_5742_ea11);
        let period: Vec<u8> = (0..STREAM_PERIOD / 8)
            .flat_map(|_| rng.next_u64().to_le_bytes())
            .collect();
        period.repeat(2)
    })
}

/// Where the token's stream starts in the pattern: the token's hash,
/// scattered (Fibonacci hashing), so that similar tokens start far apart.
fn stream_seed(token: &str) -> usize {
    let h = token
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize % STREAM_PERIOD
}

/// The bytes an upgraded client sends as its `n`th echo message.
pub fn echo_message(client: usize, n: usize, len: usize) -> Vec<u8> {
    /// The digits, repeated.
    const DIGITS: [u8; 10 * 64] = repeated(b'0', 10);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let start = (client + n * 3 + out.len()) % 10;
        let run = (len - out.len()).min(DIGITS.len() - 10);
        out.extend_from_slice(&DIGITS[start..start + run]);
    }
    out
}

/// How a request is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Body length (0: a `GET` without body).
    pub body_len: usize,
    /// Chunked instead of `Content-Length`, split into this many chunks.
    pub chunks: Option<usize>,
    /// Sends `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The connection closes after this request: `Connection: close` in
    /// HTTP/1.1; no `Connection: keep-alive` in HTTP/1.0.
    pub close: bool,
    /// An HTTP/1.0 request.
    pub http10: bool,
    /// The application answers it with a large body (so a client that
    /// does not read stalls the server's writes).
    pub big_response: bool,
    /// The application answers it with a large streamed body (a slow
    /// reader's request: the producer meets back-pressure).
    pub big_stream: bool,
    /// Asks to switch to the `echo` protocol (`Connection: Upgrade`).
    pub upgrade: bool,
}

/// A request as bytes: the head, and the body (already framed). Empty lines
/// before the request line (RFC 9112 §2.2) start the head, if `shape` says.
pub fn request(tok: &str, no: usize, shape: Shape) -> (Vec<u8>, Vec<u8>) {
    let mut head = Vec::with_capacity(96);
    let method = if shape.body_len == 0 && shape.chunks.is_none() {
        "GET"
    } else {
        "POST"
    };
    head.extend_from_slice(method.as_bytes());
    head.extend_from_slice(b" /r/");
    head.extend_from_slice(tok.as_bytes());
    head.extend_from_slice(if shape.http10 {
        b" HTTP/1.0\r\nHost: sim\r\n"
    } else {
        b" HTTP/1.1\r\nHost: sim\r\n"
    });
    match (shape.http10, shape.close, shape.upgrade) {
        (false, _, true) => head.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: echo\r\n"),
        (false, true, false) => head.extend_from_slice(b"Connection: close\r\n"),
        (true, false, _) => head.extend_from_slice(b"Connection: keep-alive\r\n"),
        _ => {}
    }
    if shape.expect_continue {
        head.extend_from_slice(b"Expect: 100-continue\r\n");
    }
    let content = body(no, shape.body_len);
    let framed = match shape.chunks {
        Some(n) => {
            head.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            let mut out = Vec::with_capacity(content.len() + 16 * n + 5);
            let step = content.len().div_ceil(n.max(1)).max(1);
            for part in content.chunks(step) {
                push_number::<16>(&mut out, part.len());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(part);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            out
        }
        None => {
            if method == "POST" {
                head.extend_from_slice(b"Content-Length: ");
                push_number::<10>(&mut head, content.len());
                head.extend_from_slice(b"\r\n");
            }
            head.extend_from_slice(b"\r\n");
            content
        }
    };
    (head, framed)
}

/// The application's answer carries its request's token in `x-req`;
/// core's own responses (rejections, 500s, the farewell) carry none.
pub fn token_of(resp: &Response) -> Option<&str> {
    resp.header("x-req")
}

/// Core's farewell: `503` with `Retry-After` and `Connection: close`, a
/// clean refusal the client may retry.
pub fn is_farewell(resp: &Response) -> bool {
    resp.status == 503
        && resp.header("retry-after").is_some()
        && resp.close
        && token_of(resp).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_testkit::response::ResponseParser;

    #[test]
    fn tokens_and_requests_round_trip() {
        assert_eq!(parse_token(&token(3, 4, 5)), Some((3, 4, 5)));
        assert_eq!(token(0, 1234, 10), "0.1234.10");
        assert_eq!(token(usize::MAX, 9, 0), format!("{}.9.0", usize::MAX));
        assert_eq!(parse_token("3.4"), None);
        let shape = Shape {
            body_len: 10,
            chunks: Some(3),
            expect_continue: false,
            close: false,
            http10: false,
            big_response: false,
            big_stream: false,
            upgrade: false,
        };
        let (head, body) = request("1.1.0", 1, shape);
        assert!(head.ends_with(b"chunked\r\n\r\n"));
        assert!(body.ends_with(b"0\r\n\r\n"));
        assert!(is_body(4, 30, &super::body(4, 30)));
        assert!(!is_body(4, 30, &super::body(5, 30)));
        // Longer than one run of alphabets, checked from an offset.
        let mut long = super::body(3, 9000);
        assert!(is_body_at(3, 5001, &long[5001..]) && is_body(3, 9000, &long));
        long[8000] ^= 1;
        assert!(!is_body_at(3, 5001, &long[5001..]));
        let whole = stream_bytes("1.2.0", 0, 100);
        assert_eq!(stream_bytes("1.2.0", 40, 60), &whole[40..]);
        assert!(is_stream_prefix("1.2.0", &whole[..77]));
        assert!(!is_stream_prefix("1.3.0", whole));
    }

    #[test]
    fn echo_messages_count_digits_on_from_where_they_start() {
        for (client, n, len) in [(0, 0, 0), (3, 1, 7), (7, 5, 640), (12, 9, 2000)] {
            let by_byte: Vec<u8> = (0..len)
                .map(|i| b'0' + ((client + n * 3 + i) % 10) as u8)
                .collect();
            assert_eq!(echo_message(client, n, len), by_byte);
        }
    }

    #[test]
    fn the_farewell_and_tokens_are_read_from_headers() {
        let mut out = Vec::new();
        ResponseParser::new()
            .feed(
                b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n\
HTTP/1.1 200 OK\r\nx-req: 1.2.0\r\nContent-Length: 0\r\n\r\n",
                &mut out,
            )
            .unwrap();
        assert!(is_farewell(&out[0]) && !is_farewell(&out[1]));
        assert_eq!(
            (token_of(&out[0]), token_of(&out[1])),
            (None, Some("1.2.0"))
        );
    }
}
