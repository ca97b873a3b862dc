//! Responses read back the way a client reads them: the one parser every test
//! of ebb uses on what core wrote.
//!
//! It is incremental — feed it bytes as they arrive, in pieces of any size,
//! and it hands back each response once its last byte is in — and it looks at
//! every byte at most once. Framing follows RFC 9112 §6.3: no body for `1xx`,
//! `204`, `304` and answers to `HEAD` (the caller says which, see
//! [`ResponseParser::feed_with`]); otherwise `Transfer-Encoding: chunked`,
//! then `Content-Length`, and failing both a body that runs until the
//! connection closes ([`ResponseParser::finish`]).
//!
//! It is strict about syntax, because it reads only what core writes and a
//! test should fail loudly on anything else: the status line is exactly
//! `HTTP/1.1 NNN reason`, each field line `name: value` with a token for a
//! name, the head UTF-8; two `Content-Length`s, `Content-Length` beside
//! `Transfer-Encoding`, and codings other than chunked are errors. What core
//! promises beyond the syntax (one `Date`, a length on every response) is for
//! each test to check on the [`Response`]s it gets.

use std::fmt;

use ebb_core::{ChunkedDecoder, ChunkedLimits};

/// How a response's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: an interim `1xx`, a `204` or `304`, or the answer to `HEAD`.
    Bodiless,
    /// `Content-Length`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body runs until the connection closes.
    UntilClose,
}

/// One response, as it appeared on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The head as written, without its final CRLF CRLF: status line and
    /// field lines, kept whole so that reading a response allocates for its
    /// head once, not for each field (the simulator parses every response
    /// twice).
    head: String,
    /// Where the reason phrase ends in `head` (it begins at 13).
    reason_end: usize,
    /// Where each field line is in `head`, in the order written.
    fields: Vec<Field>,
    /// A `Connection` header carried the `close` option.
    pub close: bool,
    /// How the body was delimited.
    pub framing: Framing,
    /// The body, de-chunked; empty when the parser discards bodies.
    pub body: Vec<u8>,
    /// Length of the body, de-chunked, whether kept or not.
    pub body_len: usize,
    /// Bytes the whole response took on the wire, head and framed body.
    pub wire_len: usize,
}

/// A field line in a response's head: its name is `head[start..colon]`,
/// its value `head[colon + 2..end]` (past the colon and one space).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Field {
    start: usize,
    colon: usize,
    end: usize,
}

impl Response {
    /// The reason phrase.
    pub fn reason(&self) -> &str {
        &self.head[13..self.reason_end]
    }

    /// The header fields in the order written, names as written.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields
            .iter()
            .map(|f| (&self.head[f.start..f.colon], self.value(f)))
    }

    /// The value of the first header named `name` (any case). Inlined:
    /// the simulator looks up a few fixed names in every response.
    #[inline]
    pub fn header(&self, name: &str) -> Option<&str> {
        let field = self.fields.iter().find(|f| self.is_named(f, name))?;
        Some(self.value(field))
    }

    /// The values of every header named `name` (any case), in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |f| self.is_named(f, name))
            .map(|f| self.value(f))
    }

    /// Whether `field` is named `name` (any case): compared as bytes, and
    /// before its value is looked at, since most lookups miss most fields.
    fn is_named(&self, field: &Field, name: &str) -> bool {
        self.head.as_bytes()[field.start..field.colon].eq_ignore_ascii_case(name.as_bytes())
    }

    fn value(&self, field: &Field) -> &str {
        &self.head[field.colon + 2..field.end]
    }

    /// An interim (`1xx`) response, which a final one follows.
    pub fn is_interim(&self) -> bool {
        self.status < 200
    }
}

/// What was wrong with the bytes: always core's fault, since the parser
/// reads only what core wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

fn error<T>(message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(message.into()))
}

/// Longest response head the parser accepts.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Core writes bare chunk-size lines and no trailers; these only bound what
/// a broken encoder could make the parser hold.
const CHUNKED_LIMITS: ChunkedLimits = ChunkedLimits {
    max_body_bytes: u64::MAX,
    max_line_bytes: 1024,
    max_trailer_bytes: 64 * 1024,
};

/// An incremental parser over one connection's byte stream from the server.
#[derive(Clone, Debug)]
pub struct ResponseParser {
    /// The head so far.
    head: Vec<u8>,
    /// How much of `\r\n\r\n` the head ends with (0..=3).
    crlf: u8,
    /// A response whose head is parsed and whose body is still arriving.
    body: Option<(Response, Rest)>,
    /// Which bodies to keep, asked of each response with a body once its
    /// head is parsed; see [`keeping_bodies_of`](Self::keeping_bodies_of).
    keep_body: fn(&Response) -> Option<usize>,
    /// Whether the body still arriving is kept.
    keeping: bool,
    /// Where a body not kept is decoded if chunked: one buffer, reused.
    discard: Vec<u8>,
    /// A `101` came: what follows is not HTTP.
    upgraded: bool,
}

/// What is left of a body.
#[derive(Clone, Debug)]
enum Rest {
    Length(usize),
    Chunked(ChunkedDecoder),
    UntilClose,
}

impl Default for ResponseParser {
    fn default() -> Self {
        ResponseParser::new()
    }
}

impl ResponseParser {
    /// A parser at the start of a connection that keeps each body.
    pub fn new() -> ResponseParser {
        ResponseParser::keeping_bodies_of(|_| Some(0))
    }

    /// A parser that only counts body bytes ([`Response::body`] stays
    /// empty), for runs that write large bodies often.
    pub fn without_bodies() -> ResponseParser {
        ResponseParser::keeping_bodies_of(|_| None)
    }

    /// A parser that keeps the bodies of the responses `keep` picks by
    /// their heads and only counts the others' bytes: a reader that checks
    /// some bodies need not copy every one. For a body it keeps, `keep`
    /// says how long the reader expects it to be, if it knows better than
    /// the framing (a chunked body announces nothing): room for that much
    /// is made at once, not by growing the body as it comes.
    pub fn keeping_bodies_of(keep: fn(&Response) -> Option<usize>) -> ResponseParser {
        ResponseParser {
            head: Vec::new(),
            crlf: 0,
            body: None,
            keep_body: keep,
            keeping: false,
            discard: Vec::new(),
            upgraded: false,
        }
    }

    /// Whether part of a response has been seen but not all of it.
    pub fn mid_response(&self) -> bool {
        !self.head.is_empty() || self.body.is_some()
    }

    /// The response whose head is complete and whose body is still arriving.
    pub fn pending(&self) -> Option<&Response> {
        self.body.as_ref().map(|(resp, _)| resp)
    }

    /// Feeds bytes on a connection where no request was `HEAD`; complete
    /// responses (interim `1xx` included) go to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Response>) -> Result<(), ParseError> {
        self.feed_with(bytes, out, |_| false)
    }

    /// Feeds bytes; complete responses (interim `1xx` included) go to `out`.
    /// `answers_head` is called once for every final response as soon as its
    /// head is parsed (its body still empty), in order, and says whether it
    /// answers a `HEAD` request and so has no body whatever its headers say.
    pub fn feed_with(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<Response>,
        answers_head: impl FnMut(&Response) -> bool,
    ) -> Result<(), ParseError> {
        self.feed_inner(bytes, out, answers_head, false).map(|_| ())
    }

    /// Feeds bytes on a connection where no request was `HEAD`, up to the
    /// end of a `101 Switching Protocols` if one comes: returns how many of
    /// `bytes` were HTTP — all of them, unless a `101` ended among them;
    /// what follows it belongs to the new protocol, for the caller.
    pub fn feed_until_upgrade(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<Response>,
    ) -> Result<usize, ParseError> {
        self.feed_inner(bytes, out, |_| false, true)
    }

    /// Whether a `101 Switching Protocols` ended the HTTP on this
    /// connection.
    pub fn is_upgraded(&self) -> bool {
        self.upgraded
    }

    /// [`feed_with`](Self::feed_with), stopping after a `101` if
    /// `stop_at_upgrade`; returns how many bytes it took.
    fn feed_inner(
        &mut self,
        all: &[u8],
        out: &mut Vec<Response>,
        mut answers_head: impl FnMut(&Response) -> bool,
        stop_at_upgrade: bool,
    ) -> Result<usize, ParseError> {
        let mut bytes = all;
        while !bytes.is_empty() {
            if self.upgraded {
                if stop_at_upgrade {
                    break;
                }
                return error(format!(
                    "{} bytes after 101 Switching Protocols",
                    bytes.len()
                ));
            }
            if self.body.is_some() {
                bytes = &bytes[self.read_body(bytes, out)?..];
                continue;
            }
            let Some(end) = self.head_end(bytes) else {
                self.head.extend_from_slice(bytes);
                if self.head.len() > MAX_HEAD_BYTES {
                    return error("response head over 64 KiB");
                }
                return Ok(all.len());
            };
            // A head that came whole in this call is parsed where it lies.
            let (mut resp, framing) = if self.head.is_empty() {
                parse_head(&bytes[..end])?
            } else {
                self.head.extend_from_slice(&bytes[..end]);
                let parsed = parse_head(&self.head)?;
                self.head.clear();
                parsed
            };
            bytes = &bytes[end..];
            self.crlf = 0;
            let bodiless = resp.is_interim()
                || answers_head(&resp)
                || resp.status == 204
                || resp.status == 304;
            resp.framing = if bodiless { Framing::Bodiless } else { framing };
            let rest = match resp.framing {
                Framing::Bodiless | Framing::Length(0) => {
                    self.upgraded = resp.status == 101;
                    out.push(resp);
                    continue;
                }
                Framing::Length(n) => Rest::Length(n),
                Framing::Chunked => Rest::Chunked(ChunkedDecoder::new()),
                Framing::UntilClose => Rest::UntilClose,
            };
            let keep = (self.keep_body)(&resp);
            self.keeping = keep.is_some();
            if let Some(expected) = keep {
                let announced = match rest {
                    Rest::Length(n) => n,
                    _ => 0,
                };
                // Bounded: the length is the server's (or the reader's) word.
                resp.body
                    .reserve_exact(expected.max(announced).min(1 << 20));
            }
            self.body = Some((resp, rest));
        }
        Ok(all.len() - bytes.len())
    }

    /// Where in `bytes` the head ends (just past its CRLF CRLF), if it
    /// does; `crlf` carries across calls how much of a CRLF CRLF the bytes
    /// so far end with, so no byte is looked at twice — and most not at
    /// all: after a byte that is neither CR nor LF, the next CRLF CRLF ends
    /// four bytes on at the earliest, so where that fourth byte is neither
    /// either, the scan skips all four.
    fn head_end(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if self.crlf == 0 && bytes.get(i + 3).is_some_and(|&b| b != b'\r' && b != b'\n') {
                i += 4;
                continue;
            }
            self.crlf = match (self.crlf, b) {
                (0 | 2, b'\r') | (1 | 3, b'\n') => self.crlf + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            i += 1;
            if self.crlf == 4 {
                return Some(i);
            }
        }
        None
    }

    /// The connection ended (the server's FIN): completes a body that runs
    /// until the close; an error when it cuts a response short.
    pub fn finish(&mut self, out: &mut Vec<Response>) -> Result<(), ParseError> {
        if !self.head.is_empty() {
            return error(format!(
                "connection closed after {} bytes of a response head",
                self.head.len()
            ));
        }
        match self.body.take() {
            None => Ok(()),
            Some((resp, Rest::UntilClose)) => {
                out.push(resp);
                Ok(())
            }
            Some((resp, _)) => error(format!(
                "connection closed inside the body of a {} response, after {} body bytes",
                resp.status, resp.body_len
            )),
        }
    }

    /// Reads body bytes of the pending response, handing it to `out` when
    /// it is complete; returns how many of `bytes` it took (all, unless the
    /// body ended inside them).
    fn read_body(&mut self, bytes: &[u8], out: &mut Vec<Response>) -> Result<usize, ParseError> {
        let keep_bodies = self.keeping;
        let (resp, rest) = self.body.as_mut().expect("a body is pending");
        let keep = |body: &mut Vec<u8>, part: &[u8]| {
            if keep_bodies {
                body.extend_from_slice(part);
            }
            part.len()
        };
        let (used, done) = match rest {
            Rest::Length(left) => {
                let n = (*left).min(bytes.len());
                *left -= n;
                resp.body_len += keep(&mut resp.body, &bytes[..n]);
                (n, *left == 0)
            }
            Rest::Chunked(decoder) => {
                let sink = if keep_bodies {
                    &mut resp.body
                } else {
                    &mut self.discard
                };
                let before = sink.len();
                let n = decoder
                    .decode(bytes, sink, &CHUNKED_LIMITS)
                    .map_err(|e| ParseError(format!("malformed chunked body: {e:?}")))?;
                resp.body_len += sink.len() - before;
                if !keep_bodies {
                    sink.clear();
                }
                (n, decoder.is_done())
            }
            Rest::UntilClose => {
                resp.body_len += keep(&mut resp.body, bytes);
                (bytes.len(), false)
            }
        };
        resp.wire_len += used;
        if done {
            let (resp, _) = self.body.take().expect("a body is pending");
            out.push(resp);
        }
        Ok(used)
    }
}

/// Parses a complete head (its final CRLF CRLF included) into a response
/// with an empty body, and the framing its headers announce.
fn parse_head(head: &[u8]) -> Result<(Response, Framing), ParseError> {
    let Ok(text) = std::str::from_utf8(head) else {
        return error(format!(
            "response head is not UTF-8: {:?}",
            String::from_utf8_lossy(head)
        ));
    };
    let text = &text[..text.len() - 4];
    let mut lines = crlf_lines(text);
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .filter(|code| code.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..=599).contains(code));
    let (Some(status), Some(b' ')) = (status, status_line.as_bytes().get(12)) else {
        return error(format!("bad status line {status_line:?}"));
    };
    let mut fields = Vec::with_capacity(8);
    let mut close = false;
    let mut length = None;
    let mut chunked = false;
    // Lines follow one another, each after the CRLF that ends the last.
    let mut start = status_line.len() + 2;
    for line in lines {
        let (colon, value) = split_field(line)?;
        let name = &line[..colon];
        if name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return error("two Content-Length headers");
            }
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return error(format!("bad Content-Length {value:?}"));
            }
            let Ok(n) = value.parse::<usize>() else {
                return error(format!("Content-Length {value} too large"));
            };
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or_default().trim();
            if chunked || !last.eq_ignore_ascii_case("chunked") {
                return error(format!("unsupported Transfer-Encoding {value:?}"));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            close |= value
                .split(',')
                .any(|option| option.trim().eq_ignore_ascii_case("close"));
        }
        fields.push(Field {
            start,
            colon: start + colon,
            end: start + line.len(),
        });
        start += line.len() + 2;
    }
    let framing = match (chunked, length) {
        (true, Some(_)) => return error("both Transfer-Encoding and Content-Length"),
        (true, None) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::UntilClose,
    };
    let resp = Response {
        status,
        head: text.to_owned(),
        reason_end: status_line.len(),
        fields,
        close,
        framing: Framing::UntilClose,
        body: Vec::new(),
        body_len: 0,
        wire_len: head.len(),
    };
    Ok((resp, framing))
}

/// A field line's name (how long it is) and value: the name a non-empty
/// run of visible characters ended by the line's first colon, the value
/// what follows the colon and one space. A good line is read in one pass
/// over its name; a bad one is looked at again, to say what is wrong.
fn split_field(line: &str) -> Result<(usize, &str), ParseError> {
    let b = line.as_bytes();
    let stop = b.iter().position(|&c| c == b':' || !c.is_ascii_graphic());
    if let Some(colon) = stop.filter(|&i| i > 0 && b[i] == b':' && b.get(i + 1) == Some(&b' ')) {
        return Ok((colon, &line[colon + 2..]));
    }
    // A colon with a space after it, then, but a name that is empty or
    // holds a byte that is not a visible character.
    match b.iter().position(|&c| c == b':') {
        Some(colon) if b.get(colon + 1) == Some(&b' ') => {
            error(format!("bad header name {:?}", &line[..colon]))
        }
        _ => error(format!("bad header line {line:?}")),
    }
}

/// `text` split at each CRLF, as `text.split("\r\n")` does: each LF,
/// found by [`find_lf`], ends a line if a CR is before it.
fn crlf_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let t = rest?;
        let b = t.as_bytes();
        let mut from = 0;
        while let Some(lf) = find_lf(&b[from..]).map(|i| from + i) {
            if lf > 0 && b[lf - 1] == b'\r' {
                rest = Some(&t[lf + 1..]);
                return Some(&t[..lf - 1]);
            }
            from = lf + 1;
        }
        rest = None;
        Some(t)
    })
}

/// Where the first LF in `b` is, looked for eight bytes at a time: an LF
/// is a zero byte in the word XOR eight LFs, and the lowest byte the
/// classic has-a-zero-byte test flags is the first zero (a borrow runs
/// only upwards). Several times cheaper than a byte loop on field lines
/// of a few dozen bytes, and the simulator parses every response twice.
fn find_lf(b: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    const LFS: u64 = u64::from_le_bytes([b'\n'; 8]);
    let mut words = b.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes")) ^ LFS;
        let zeros = x.wrapping_sub(ONES) & !x & HIGHS;
        if zeros != 0 {
            return Some(at + zeros.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let tail = words.remainder().iter().position(|&c| c == b'\n');
    tail.map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An interim response, a length-delimited one, a chunked one with a
    /// trailer, and a closing rejection.
    const WIRE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 200 OK\r\nx-req: 1.2.0\r\nContent-Length: 3\r\n\r\nabc\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n1\r\nf\r\n0\r\nX-T: 1\r\n\r\n\
HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno";

    /// Feeds `parts` in turn and then the close; the parser must not be
    /// left mid-response.
    fn parse_in(parts: &[&[u8]]) -> Vec<Response> {
        let mut p = ResponseParser::new();
        let mut out = Vec::new();
        for part in parts {
            p.feed(part, &mut out).unwrap();
        }
        assert!(!p.mid_response());
        p.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn whole_bytewise_and_split_agree() {
        let whole = parse_in(&[WIRE]);
        let summary: Vec<_> = whole
            .iter()
            .map(|r| (r.status, r.close, r.framing, &r.body[..]))
            .collect();
        assert_eq!(
            summary,
            [
                (100, false, Framing::Bodiless, &b""[..]),
                (200, false, Framing::Length(3), b"abc"),
                (200, false, Framing::Chunked, b"def"),
                (413, true, Framing::Length(2), b"no"),
            ]
        );
        assert_eq!(whole[1].header("X-REQ"), Some("1.2.0"));
        assert_eq!(whole[3].reason(), "Payload Too Large");
        assert_eq!(whole.iter().map(|r| r.wire_len).sum::<usize>(), WIRE.len());
        let bytes: Vec<&[u8]> = WIRE.chunks(1).collect();
        assert_eq!(parse_in(&bytes), whole);
        for cut in 0..WIRE.len() {
            assert_eq!(
                parse_in(&[&WIRE[..cut], &WIRE[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn trailing_bytes_stay_pending_until_they_complete_a_response() {
        let mut p = ResponseParser::new();
        let mut out = Vec::new();
        p.feed(&WIRE[..WIRE.len() - 1], &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert!(p.mid_response());
        assert_eq!(p.pending().map(|r| r.status), Some(413));
        assert!(p.finish(&mut out).is_err(), "a close inside the body");
    }

    #[test]
    fn a_body_without_length_runs_until_the_close() {
        let mut p = ResponseParser::new();
        let mut out = Vec::new();
        p.feed(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall ",
            &mut out,
        )
        .unwrap();
        p.feed(b"of it", &mut out).unwrap();
        assert!(out.is_empty() && p.mid_response());
        p.finish(&mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].framing, &out[0].body[..], out[0].close),
            (Framing::UntilClose, &b"all of it"[..], true)
        );
    }

    #[test]
    fn no_body_for_204_304_and_head_answers_whatever_the_length_says() {
        let wire = b"HTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let mut p = ResponseParser::new();
        let mut out = Vec::new();
        let mut finals = 0;
        p.feed_with(wire, &mut out, |_| {
            finals += 1;
            finals == 3
        })
        .unwrap();
        assert_eq!(finals, 4, "asked once for every final response");
        let bodies: Vec<_> = out.iter().map(|r| (r.framing, r.body_len)).collect();
        assert_eq!(
            bodies,
            [
                (Framing::Bodiless, 0),
                (Framing::Bodiless, 0),
                (Framing::Bodiless, 0),
                (Framing::Length(5), 5)
            ]
        );
        assert!(!p.mid_response());
    }

    #[test]
    fn without_bodies_counts_but_keeps_nothing() {
        let mut p = ResponseParser::without_bodies();
        let mut out = Vec::new();
        for piece in WIRE.chunks(7) {
            p.feed(piece, &mut out).unwrap();
        }
        let lens: Vec<_> = out.iter().map(|r| (r.body.len(), r.body_len)).collect();
        assert_eq!(lens, [(0, 0), (0, 3), (0, 3), (0, 2)]);
    }

    #[test]
    fn keeping_bodies_of_keeps_the_bodies_it_picks_with_room_made_at_once() {
        let mut p = ResponseParser::keeping_bodies_of(|r| r.header("x-req").map(|_| 64));
        let mut out = Vec::new();
        p.feed(WIRE, &mut out).unwrap();
        let bodies: Vec<_> = out.iter().map(|r| (&r.body[..], r.body_len)).collect();
        assert_eq!(bodies, [(&b""[..], 0), (b"abc", 3), (b"", 3), (b"", 2)]);
        assert!(out[1].body.capacity() >= 64);
    }

    #[test]
    fn nothing_follows_a_101() {
        let mut p = ResponseParser::new();
        let mut out = Vec::new();
        p.feed(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", &mut out)
            .unwrap();
        assert_eq!(out[0].status, 101);
        assert!(p.feed(b"\x81\x00", &mut out).is_err());
    }

    #[test]
    fn feeding_until_an_upgrade_leaves_the_new_protocol_to_the_caller() {
        let wire = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n\r\nhello";
        let head = wire.len() - 5;
        let mut whole = ResponseParser::new();
        let mut out = Vec::new();
        assert_eq!(whole.feed_until_upgrade(wire, &mut out), Ok(head));
        assert!(whole.is_upgraded() && out[0].status == 101);
        assert_eq!(whole.feed_until_upgrade(b"more", &mut out), Ok(0));
        let mut bytewise = ResponseParser::new();
        let mut out = Vec::new();
        let taken: usize = wire
            .chunks(1)
            .map(|b| bytewise.feed_until_upgrade(b, &mut out).unwrap())
            .sum();
        assert_eq!((taken, out.len()), (head, 1));
    }

    #[test]
    fn anything_core_would_not_write_is_an_error() {
        for wire in [
            &b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200OK\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 600 High\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length:3\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
            b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\na",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
            b"HTTP/1.1 200 OK\r\nX: \xff\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX:: v\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX:y: v\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n: v\r\n\r\n",
        ] {
            let mut out = Vec::new();
            let result = ResponseParser::new().feed(wire, &mut out);
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn find_lf_finds_the_first_lf_wherever_it_is() {
        for len in 0..40 {
            for lf in 0..len {
                let mut b = vec![b'a'; len];
                b[lf] = b'\n';
                if lf + 1 < len {
                    b[len - 1] = b'\n';
                }
                assert_eq!(find_lf(&b), Some(lf), "{len} {lf}");
            }
            assert_eq!(find_lf(&vec![0x8a; len]), None);
        }
    }

    #[test]
    fn head_lines_split_as_split_at_crlf_does() {
        for text in [
            "",
            "a",
            "a\r\nb",
            "\r\n",
            "a\nb\r\nc\rd\r\n\r\ne",
            "\n\r\r\n\n",
            "ab\r\ncd\r\nefg",
            "abc\r\r\nd\n\r\n",
            "Date: Mon, 30 Nov 2026 05:11:12 GMT\r\nx-req: 1.2.0\r\nContent-Length: 3",
            "0123456\n89abcdef\r\n0123456789abcde\r\r\n\n\n01234567\r\n",
        ] {
            let want: Vec<&str> = text.split("\r\n").collect();
            assert_eq!(crlf_lines(text).collect::<Vec<_>>(), want, "{text:?}");
        }
    }
}
