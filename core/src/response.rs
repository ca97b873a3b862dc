//! Serialising responses: the status line, the headers core owns (`Date`,
//! `Content-Length`, `Connection`), the application's headers, and the body.

use crate::byteset::{run_of, TCHAR};
use crate::reject::Reject;

/// Why a response from the application was not accepted. For every error
/// but [`UnknownRequest`](Self::UnknownRequest), core has answered the
/// request with 500 in its place.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RespondError {
    /// The request is not waiting for a response: it was already answered, or
    /// its connection was closed (the client aborted, or the drain deadline
    /// passed). Nothing is written; this is normal and needs no handling.
    UnknownRequest,
    /// The status is not a final status (200–599).
    InvalidStatus,
    /// A header name is not a token or a value contains CR, LF or NUL.
    InvalidHeader,
    /// A `101 Switching Protocols` for a request that did not ask to upgrade.
    NotAnUpgrade,
}

impl std::fmt::Display for RespondError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RespondError::UnknownRequest => "request is no longer waiting for a response",
            RespondError::InvalidStatus => "status is not between 200 and 599",
            RespondError::InvalidHeader => "invalid header name or value",
            RespondError::NotAnUpgrade => "the request did not ask to upgrade",
        })
    }
}

impl std::error::Error for RespondError {}

/// Whether core writes the header `name` itself, so that the application's
/// copy is dropped and the framing on the wire is always the one core
/// decided: `Content-Length`, `Transfer-Encoding`, `Connection`, `Date` and
/// `Keep-Alive`. The length picks the candidates, so most names (every
/// response's `Content-Type`, say) are told apart without a comparison.
#[inline]
fn is_owned(name: &[u8]) -> bool {
    let owned: &[&[u8]] = match name.len() {
        4 => &[b"date"],
        10 => &[b"connection", b"keep-alive"],
        14 => &[b"content-length"],
        17 => &[b"transfer-encoding"],
        _ => return false,
    };
    owned.iter().any(|owned| name.eq_ignore_ascii_case(owned))
}

/// What the head needs beyond the application's status and headers.
pub(crate) struct Framing<'a> {
    /// The whole `Date` field line, CRLF included.
    pub date_line: &'a [u8],
    /// The body length to announce, or `None` for statuses without a body
    /// and for bodies of unknown length.
    pub content_length: Option<u64>,
    /// The body is sent in chunks (`Transfer-Encoding: chunked`).
    pub chunked: bool,
    pub connection: ConnectionHeader,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum ConnectionHeader {
    None,
    KeepAlive,
    Close,
    /// A `101 Switching Protocols`: the connection leaves HTTP.
    Upgrade,
}

/// Whether a response with this status carries a body (and `Content-Length`).
pub(crate) fn status_has_body(status: u16) -> bool {
    !(status == 204 || status == 304)
}

/// The start of the last response head written: its status line, the
/// `Date` line and, when it announces a length, `Content-Length: `. Most
/// responses start like the one before, so the start is copied whole
/// instead of assembled from four pieces (about 40 instructions per
/// response); it is rebuilt when the status, the framing or the date
/// changes.
#[derive(Debug, Default)]
pub(crate) struct HeadStart {
    /// The status and whether a length follows, once `bytes` holds a start.
    key: Option<(u16, bool)>,
    bytes: Vec<u8>,
}

impl HeadStart {
    /// Forgets the start, for a new `Date`.
    pub fn forget(&mut self) {
        self.key = None;
    }

    // Inlined into `write_head`: on the usual hit it is one comparison.
    #[inline]
    fn get(&mut self, status: u16, date_line: &[u8], has_length: bool) -> &[u8] {
        let key = Some((status, has_length));
        if self.key != key {
            self.key = key;
            self.bytes.clear();
            write_status_line(&mut self.bytes, status);
            self.bytes.extend_from_slice(date_line);
            if has_length {
                self.bytes.extend_from_slice(b"Content-Length: ");
            }
        }
        &self.bytes
    }
}

/// Writes a response head into `out`, its start from `start`. On an invalid
/// header, `out` is left as it was and the error is returned.
pub(crate) fn write_head<H, N, V>(
    out: &mut Vec<u8>,
    status: u16,
    headers: H,
    framing: &Framing<'_>,
    start: &mut HeadStart,
) -> Result<(), RespondError>
where
    H: IntoIterator<Item = (N, V)>,
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let switching = status == 101 && framing.connection == ConnectionHeader::Upgrade;
    if !(200..=599).contains(&status) && !switching {
        return Err(RespondError::InvalidStatus);
    }
    let rollback = out.len();
    out.extend_from_slice(start.get(status, framing.date_line, framing.content_length.is_some()));
    if let Some(len) = framing.content_length {
        write_length_line_end(out, len);
    }
    write_framing_tail(out, framing);
    let Ok(offers_upgrade) = write_fields(out, headers) else {
        out.truncate(rollback);
        return Err(RespondError::InvalidHeader);
    };
    if offers_upgrade && !switching {
        // RFC 9110 §7.8: an `Upgrade` field goes with the `upgrade`
        // connection option (a 426, say), so that no intermediary forwards
        // it. Core owns `Connection`: a second line adds to its list.
        out.extend_from_slice(b"Connection: upgrade\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Writes the application's header (or trailer) fields, but those core
/// owns ([`is_owned`]). Says whether one was `Upgrade`; `Err` at the first
/// invalid one, with some written: the caller rolls `out` back.
fn write_fields<H, N, V>(out: &mut Vec<u8>, fields: H) -> Result<bool, ()>
where
    H: IntoIterator<Item = (N, V)>,
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut has_upgrade = false;
    for (name, value) in fields {
        let (name, value) = (name.as_ref(), value.as_ref());
        if !is_token(name) || !is_field_value(value) {
            return Err(());
        }
        if is_owned(name) {
            continue;
        }
        has_upgrade |= name.len() == 7 && name.eq_ignore_ascii_case(b"upgrade");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    Ok(has_upgrade)
}

/// Writes the whole response core sends for a rejected request; returns the
/// length of its body.
pub(crate) fn write_rejection(out: &mut Vec<u8>, reject: &Reject, date_line: &[u8]) -> u64 {
    let status = reject.status();
    let detail = reject.detail();
    let body_len = 3 + 1 + reason(status).len() + 2 + detail.len() + 1;
    write_status_line(out, status);
    write_framing(
        out,
        &Framing {
            date_line,
            content_length: Some(body_len as u64),
            chunked: false,
            connection: ConnectionHeader::Close,
        },
    );
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n\r\n");
    write_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(detail.as_bytes());
    out.push(b'\n');
    body_len as u64
}

/// A response core queues on its own as it cuts a connection, written once
/// without waiting, just before the close.
pub(crate) struct Farewell {
    pub bytes: &'static [u8],
    /// Its status and body length, for its request's [`Finished`](crate::Finished).
    pub status: u16,
    pub body_bytes: u64,
}

/// What a client whose request was still arriving hears when the drain
/// deadline (or a second stop) cuts it: the server is going away, and it may
/// retry elsewhere. Static, so it can outlive the connection's buffers;
/// `Date` is optional on a 5xx (RFC 9110 §6.6.1).
pub(crate) const CUT_WHILE_RECEIVING: Farewell = Farewell {
    bytes: b"HTTP/1.1 503 Service Unavailable\r\n\
Connection: close\r\n\
Retry-After: 1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 34\r\n\
\r\n\
503 Service Unavailable: stopping\n",
    status: 503,
    body_bytes: 34,
};

/// The interim response that tells a client waiting on `Expect: 100-continue`
/// to send its body.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

// Inlined, like the other small helpers of `write_head` (`write_framing`,
// `is_token`, `is_field_value`): each runs once per response, and its call
// costs as much as its body (about 25 instructions per request together).
#[inline]
fn write_status_line(out: &mut Vec<u8>, status: u16) {
    if let Some(line) = status_line(status) {
        return out.extend_from_slice(line.as_bytes());
    }
    debug_assert!((100..=999).contains(&status), "a status has three digits");
    let mut line = *b"HTTP/1.1 000 \r\n";
    for (at, unit) in [(9, 100), (10, 10), (11, 1)] {
        line[at] = b'0' + (status / unit % 10) as u8;
    }
    out.extend_from_slice(&line);
}

#[inline]
fn write_framing(out: &mut Vec<u8>, framing: &Framing<'_>) {
    out.extend_from_slice(framing.date_line);
    if let Some(len) = framing.content_length {
        out.extend_from_slice(b"Content-Length: ");
        write_u64(out, len);
        out.extend_from_slice(b"\r\n");
    }
    write_framing_tail(out, framing);
}

/// The framing lines after `Content-Length`: `Transfer-Encoding` and
/// `Connection`.
#[inline]
fn write_framing_tail(out: &mut Vec<u8>, framing: &Framing<'_>) {
    if framing.chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    match framing.connection {
        ConnectionHeader::None => {}
        ConnectionHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        ConnectionHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
        ConnectionHeader::Upgrade => out.extend_from_slice(b"Connection: Upgrade\r\n"),
    }
}

/// Writes one chunk of a chunked body: its size in hex, the data, CRLFs.
pub(crate) fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    let mut size = [0u8; 16];
    let digits = hex_digits(data.len() as u64, &mut size);
    out.extend_from_slice(digits);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Bytes a chunk adds around its data.
pub(crate) fn chunk_overhead(len: usize) -> usize {
    let mut size = [0u8; 16];
    hex_digits(len as u64, &mut size).len() + 4
}

fn hex_digits(mut n: u64, buf: &mut [u8; 16]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b"0123456789abcdef"[(n % 16) as usize];
        n /= 16;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Writes the end of a chunked body: the last chunk, the trailer fields,
/// the blank line. On an invalid trailer `out` is left as it was. Trailers
/// that would change framing or routing are dropped (RFC 9110 §6.5.1).
pub(crate) fn write_last_chunk<H, N, V>(out: &mut Vec<u8>, trailers: H) -> Result<(), RespondError>
where
    H: IntoIterator<Item = (N, V)>,
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let rollback = out.len();
    out.extend_from_slice(b"0\r\n");
    if write_fields(out, trailers).is_err() {
        out.truncate(rollback);
        return Err(RespondError::InvalidHeader);
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Writes `len` in decimal and the CRLF that ends its line. The digits are
/// put in a fixed array, which is copied whole and cut back to length: a
/// copy of known size is a few moves, where one of the digits' own length
/// is a call to `memcpy` (with `itoa`'s call, about 25 instructions per
/// response).
// Inlined into `write_head`, for every response's `Content-Length`.
#[inline]
fn write_length_line_end(out: &mut Vec<u8>, mut len: u64) {
    // 10^19 is the largest power of ten a u64 holds; past it, 20 digits.
    let (mut digits, mut bound) = (1, 10u64);
    while digits < 20 && len >= bound {
        digits += 1;
        bound = bound.wrapping_mul(10);
    }
    let mut line = [0u8; 22];
    for at in (0..digits).rev() {
        line[at] = b'0' + (len % 10) as u8;
        len /= 10;
    }
    line[digits] = b'\r';
    line[digits + 1] = b'\n';
    let end = out.len() + digits + 2;
    out.extend_from_slice(&line);
    out.truncate(end);
}

// Inlined into `write_framing`, for every response's `Content-Length`.
#[inline]
fn write_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(n).as_bytes());
}

/// `1*tchar` of RFC 9110 §5.6.2.
#[inline]
fn is_token(name: &[u8]) -> bool {
    !name.is_empty() && run_of(name, &TCHAR) == name.len()
}

#[inline]
fn is_field_value(value: &[u8]) -> bool {
    let allowed = |b: &u8| !matches!(b, b'\r' | b'\n' | 0);
    // Eight bytes at a time: a word with no byte below 0x0E (the usual
    // case) holds none of CR, LF and NUL; only other words are looked into.
    let mut words = value.chunks_exact(8);
    let word_allowed = |word: &[u8]| {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let below_0e = x.wrapping_sub(0x0e0e_0e0e_0e0e_0e0e) & !x & 0x8080_8080_8080_8080;
        below_0e == 0 || word.iter().all(allowed)
    };
    words.by_ref().all(word_allowed) && words.remainder().iter().all(allowed)
}

/// The registered statuses (RFC 9110 §15) and their reason phrases.
macro_rules! registered_statuses {
    ($($code:literal $reason:literal,)*) => {
        /// The whole status line of a registered status, so writing one is a
        /// single copy; `None` for unregistered codes.
        fn status_line(status: u16) -> Option<&'static str> {
            match status {
                $($code => Some(concat!("HTTP/1.1 ", stringify!($code), " ", $reason, "\r\n")),)*
                _ => None,
            }
        }
    };
}

registered_statuses! {
    100 "Continue",
    101 "Switching Protocols",
    200 "OK",
    201 "Created",
    202 "Accepted",
    203 "Non-Authoritative Information",
    204 "No Content",
    205 "Reset Content",
    206 "Partial Content",
    300 "Multiple Choices",
    301 "Moved Permanently",
    302 "Found",
    303 "See Other",
    304 "Not Modified",
    307 "Temporary Redirect",
    308 "Permanent Redirect",
    400 "Bad Request",
    401 "Unauthorized",
    403 "Forbidden",
    404 "Not Found",
    405 "Method Not Allowed",
    406 "Not Acceptable",
    408 "Request Timeout",
    409 "Conflict",
    410 "Gone",
    411 "Length Required",
    412 "Precondition Failed",
    413 "Content Too Large",
    414 "URI Too Long",
    415 "Unsupported Media Type",
    416 "Range Not Satisfiable",
    417 "Expectation Failed",
    421 "Misdirected Request",
    422 "Unprocessable Content",
    426 "Upgrade Required",
    428 "Precondition Required",
    429 "Too Many Requests",
    431 "Request Header Fields Too Large",
    500 "Internal Server Error",
    501 "Not Implemented",
    502 "Bad Gateway",
    503 "Service Unavailable",
    504 "Gateway Timeout",
    505 "HTTP Version Not Supported",
}

/// The reason phrase for a status; empty for unregistered codes, which the
/// grammar allows.
pub(crate) fn reason(status: u16) -> &'static str {
    status_line(status).map_or("", |line| &line["HTTP/1.1 200 ".len()..line.len() - 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_core_owns_are_known_in_any_case_and_no_others_are() {
        for owned in [
            "Content-Length",
            "TRANSFER-ENCODING",
            "connection",
            "Date",
            "keep-ALIVE",
        ] {
            assert!(is_owned(owned.as_bytes()), "{owned}");
        }
        for other in [
            "Content-Type",
            "Content-Lengths",
            "Connectiom",
            "Data",
            "Keep-Alivf",
            "Transfer-Encodinf",
            "Upgrade",
            "",
        ] {
            assert!(!is_owned(other.as_bytes()), "{other}");
        }
    }

    const DATE_LINE: &[u8] = b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";

    fn head(
        status: u16,
        headers: &[(&str, &str)],
        content_length: Option<u64>,
        connection: ConnectionHeader,
    ) -> Result<String, RespondError> {
        let mut out = Vec::new();
        let framing = Framing {
            date_line: DATE_LINE,
            content_length,
            chunked: false,
            connection,
        };
        write_head(
            &mut out,
            status,
            headers.iter().map(|(n, v)| (n, v)),
            &framing,
            &mut HeadStart::default(),
        )?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn chunks_carry_their_size_in_hex() {
        let mut out = Vec::new();
        write_chunk(&mut out, &[b'x'; 300]);
        assert!(out.starts_with(b"12c\r\nxxx") && out.ends_with(b"x\r\n"));
        assert_eq!(out.len(), 300 + chunk_overhead(300));
        write_last_chunk(&mut out, [("X-Sum", "7"), ("Content-Length", "9")]).unwrap();
        assert!(out.ends_with(b"x\r\n0\r\nX-Sum: 7\r\n\r\n"));
        let mut empty = Vec::new();
        write_chunk(&mut empty, b"");
        assert_eq!(empty, b"0\r\n\r\n");
    }

    #[test]
    fn lengths_are_written_in_decimal_whatever_their_digits() {
        for len in [
            0,
            9,
            10,
            99,
            100,
            12_345,
            10_u64.pow(19) - 1,
            10_u64.pow(19),
            u64::MAX,
        ] {
            let mut out = b"Content-Length: ".to_vec();
            write_length_line_end(&mut out, len);
            assert_eq!(out, format!("Content-Length: {len}\r\n").as_bytes());
        }
    }

    #[test]
    fn the_kept_head_start_follows_status_length_and_date() {
        let mut start = HeadStart::default();
        let head = |start: &mut HeadStart, status, content_length, date_line: &[u8]| {
            let mut out = Vec::new();
            let framing = Framing {
                date_line,
                content_length,
                chunked: false,
                connection: ConnectionHeader::None,
            };
            write_head(&mut out, status, [("A", "b")], &framing, start).unwrap();
            String::from_utf8(out).unwrap()
        };
        let other_date = b"Date: Mon, 07 Nov 1994 08:49:37 GMT\r\n";
        assert_eq!(
            head(&mut start, 200, Some(5), DATE_LINE),
            "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 5\r\nA: b\r\n\r\n"
        );
        assert_eq!(
            head(&mut start, 404, Some(5), DATE_LINE),
            "HTTP/1.1 404 Not Found\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 5\r\nA: b\r\n\r\n"
        );
        assert_eq!(
            head(&mut start, 404, None, DATE_LINE),
            "HTTP/1.1 404 Not Found\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nA: b\r\n\r\n"
        );
        start.forget();
        assert_eq!(
            head(&mut start, 404, None, other_date),
            "HTTP/1.1 404 Not Found\r\nDate: Mon, 07 Nov 1994 08:49:37 GMT\r\nA: b\r\n\r\n"
        );
    }

    #[test]
    fn the_cut_response_announces_its_status_and_body_length() {
        let text = std::str::from_utf8(CUT_WHILE_RECEIVING.bytes).unwrap();
        let status = CUT_WHILE_RECEIVING.status.to_string();
        assert_eq!(text.split(' ').nth(1), Some(&status[..]));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(CUT_WHILE_RECEIVING.body_bytes, body.len() as u64);
    }

    #[test]
    fn writes_status_date_length_and_headers() {
        let h = head(
            200,
            &[("Content-Type", "text/plain")],
            Some(5),
            ConnectionHeader::None,
        )
        .unwrap();
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n"
        );
    }

    #[test]
    fn drops_framing_headers_from_the_application() {
        let h = head(
            200,
            &[
                ("content-length", "99"),
                ("Transfer-Encoding", "chunked"),
                ("Connection", "keep-alive"),
            ],
            Some(0),
            ConnectionHeader::Close,
        )
        .unwrap();
        assert!(
            !h.contains("Length: 99") && !h.contains("chunked") && !h.contains("keep-alive"),
            "{h}"
        );
        assert!(h.contains("Connection: close\r\n"));
    }

    #[test]
    fn rejects_header_injection_and_leaves_the_buffer_alone() {
        let mut out = b"earlier".to_vec();
        let framing = Framing {
            date_line: DATE_LINE,
            content_length: Some(0),
            chunked: false,
            connection: ConnectionHeader::None,
        };
        let bad = [("X", "a\r\nSet-Cookie: evil")];
        let mut start = HeadStart::default();
        let r = write_head(
            &mut out,
            200,
            bad.iter().map(|(n, v)| (n, v)),
            &framing,
            &mut start,
        );
        assert_eq!(r, Err(RespondError::InvalidHeader));
        assert_eq!(out, b"earlier");
        assert_eq!(
            head(200, &[("Bad Name", "v")], None, ConnectionHeader::None),
            Err(RespondError::InvalidHeader)
        );
    }

    #[test]
    fn status_lines_carry_the_registered_reason_or_none() {
        let line = |status| {
            let mut out = Vec::new();
            write_status_line(&mut out, status);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(line(200), "HTTP/1.1 200 OK\r\n");
        assert_eq!(line(505), "HTTP/1.1 505 HTTP Version Not Supported\r\n");
        assert_eq!(line(299), "HTTP/1.1 299 \r\n");
        assert_eq!((reason(404), reason(299)), ("Not Found", ""));
    }

    #[test]
    fn field_values_with_cr_lf_or_nul_anywhere_are_refused() {
        let value = *b"text/plain; charset=utf-8";
        assert!(is_field_value(&value));
        for at in 0..value.len() {
            for bad in [b'\r', b'\n', 0] {
                let mut v = value;
                v[at] = bad;
                assert!(!is_field_value(&v), "{bad} at {at}");
            }
            // Other control bytes below CR pass, as before.
            let mut v = value;
            v[at] = b'\t';
            assert!(is_field_value(&v));
        }
    }

    /// The word-at-a-time test against the byte-at-a-time definition: each
    /// bad byte at each place of values whole words long and not, among
    /// each other byte, so that no word of odd bytes (controls, or bytes
    /// from 0x80) slips a CR, LF or NUL through.
    #[test]
    fn field_values_are_judged_as_byte_by_byte_among_any_other_bytes() {
        let allowed = |b: u8| !matches!(b, b'\r' | b'\n' | 0);
        for other in (0..=255u8).filter(|&b| allowed(b)) {
            for len in [8, 16, 17] {
                let value = vec![other; len];
                assert!(is_field_value(&value), "{other:#04x} × {len}");
                for at in 0..len {
                    for bad in [b'\r', b'\n', 0] {
                        let mut v = value.clone();
                        v[at] = bad;
                        assert!(!is_field_value(&v), "{bad:#04x} at {at} among {other:#04x}");
                    }
                }
            }
        }
    }

    #[test]
    fn refuses_informational_and_out_of_range_statuses() {
        for status in [100, 101, 199, 600, 0] {
            assert_eq!(
                head(status, &[], None, ConnectionHeader::None),
                Err(RespondError::InvalidStatus)
            );
        }
    }

    #[test]
    fn rejection_is_a_short_text_with_close() {
        let mut out = Vec::new();
        write_rejection(&mut out, &Reject::TargetTooLong, DATE_LINE);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"));
        assert!(head.contains("Connection: close"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(body, "414 URI Too Long: request target too long\n");
    }
}
