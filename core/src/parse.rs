//! Request heads: finding their end without rescanning, parsing them with
//! httparse, and the header rules of RFC 9110/9112 that decide framing and
//! persistence.
//!
//! Slow input must cost O(bytes): [`HeadScan`] remembers how far the buffer has
//! been searched, so httparse runs at most three times per request — when the
//! first bytes arrive, on the request line once it is complete (to reject a
//! bad one early), and when the blank line ending the head has arrived.
//! Errors are reported from the method as it arrives, from whole lines and
//! from whole heads, each from bytes that are there however the input was
//! split, so the outcome never depends on the split.

use std::mem::MaybeUninit;

mod block;
mod fields;
mod line;

use crate::byteset::{alphanumeric_and, run_of, TCHAR};
use crate::config::Config;
use crate::reject::{Malformed, Reject, Unsupported};

/// A byte range inside the connection's input buffer, relative to the start of
/// the request.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    fn of(base: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - base.as_ptr() as usize;
        Span {
            start: start as u32,
            len: part.len() as u32,
        }
    }

    pub fn get<'a>(&self, base: &'a [u8]) -> &'a [u8] {
        &base[self.start as usize..(self.start + self.len) as usize]
    }
}

/// One header field, as spans.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSpan {
    pub name: Span,
    pub value: Span,
}

/// How the request body is delimited.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
}

/// What the rest of core needs to know about a parsed head; the header fields
/// themselves are stored as spans by the caller.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub method: Span,
    /// The method when it is one of the standard ones, so that reading it
    /// needs no UTF-8 check: the driver and most applications read it for
    /// every request. One byte, not a `&'static str`: a smaller head keeps
    /// the connection state small enough to be moved without a `memcpy`.
    pub standard_method: Option<Method>,
    pub target: Span,
    /// The part of the target that routes, found once here so that reading it
    /// is a slice: the path of an origin-form or absolute-form target (empty
    /// for `http://host`, which means `/`), or `*`.
    pub path: Span,
    /// The query of the target, without its `?`.
    pub query: Option<Span>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1 and for later HTTP/1 minor versions,
    /// which are processed as 1.1.
    pub minor_version: u8,
    /// Bytes of the head, blank line included.
    pub len: usize,
    pub framing: Framing,
    /// Whether the client asked to keep the connection (before server policy).
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub is_head_method: bool,
    /// The client asks to switch protocols (`Connection: upgrade` and an
    /// `Upgrade` field, HTTP/1.1 only, RFC 9110 §7.8).
    pub upgrade: bool,
}

/// Where the search for the end of a head has got to. Reset for every request.
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct HeadScan {
    /// Bytes already searched for the blank line.
    searched: usize,
    /// Where the request line ends, once its LF has arrived.
    line_end: Option<usize>,
    /// Bytes of the method found to be `tchar`s so far, and whether the
    /// space after it has come (see [`check_method`]).
    method_len: usize,
    method_done: bool,
    /// Bytes of empty lines dropped before the request line.
    pub blank: usize,
}

/// Most header fields parsed with a stack array; a configured `max_headers`
/// beyond this costs one allocation per head.
const STACK_HEADERS: usize = 128;

/// Tries to parse the head at the start of `buf` (which begins at the request's
/// first byte). `Ok(None)` means more bytes are needed.
///
/// The rules apply in the order their trigger appears in the byte stream, so
/// the verdict is the same however the input was split:
/// 0. a byte that is neither a `tchar` of the method nor the space after
///    it, within the line's first `line_limit + 1` bytes, as it arrives:
///    400 (the first byte of a TLS handshake, say, is refused at once, not
///    at the header timeout);
/// 1. a request line longer than the target allows, before its LF: 414, or
///    501 if the method alone is that long;
/// 2. a request line that is not valid, at its LF: 400, or 505 if only its
///    version (a major version other than 1) is wrong;
/// 3. a head larger than `max_head_bytes`, before its blank line: 431;
/// 4. the complete head: header rules, the exact target length, and so on.
// Inlined: the current request's reader calls it for every request, and
// with a second caller (the search ahead, rarely run) the compiler would
// keep it out of line, at some 20 instructions a request.
#[inline(always)]
pub(crate) fn parse_head(
    buf: &[u8],
    scan: &mut HeadScan,
    config: &Config,
    fields: &mut Vec<FieldSpan>,
) -> Result<Option<Head>, Reject> {
    let line_limit = config.max_target_bytes + MAX_LINE_OVERHEAD;
    if scan.searched == 0 {
        // Most heads arrive whole: one httparse pass, no separate scan. A
        // valid head can still break rules 1 and 3; anything else is judged
        // below, in rule order.
        if let Ok(Some(head)) = parse_complete(buf, config, fields) {
            if request_line_len(buf, &head) > line_limit {
                return Err(line_too_long(buf, config, line_limit));
            }
            if head.len > config.max_head_bytes {
                return Err(Reject::HeadTooLarge);
            }
            return Ok(Some(head));
        }
    }
    check_method(buf, scan, line_limit)?;
    let from = scan.searched.saturating_sub(3);
    let end = find_blank_line(&buf[from..]).map(|e| from + e);
    let line_was_known = scan.line_end.is_some();
    if !line_was_known {
        scan.line_end = buf[scan.searched..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| scan.searched + i);
    }
    scan.searched = buf.len();
    if scan.line_end.unwrap_or(buf.len()) > line_limit {
        return Err(line_too_long(buf, config, line_limit));
    }
    if let (false, Some(line_end)) = (line_was_known, scan.line_end) {
        check_request_line(&buf[..=line_end], config)?;
    }
    if end.unwrap_or(buf.len()) > config.max_head_bytes {
        return Err(Reject::HeadTooLarge);
    }
    if end.is_none() {
        return Ok(None);
    }
    match parse_complete(buf, config, fields)? {
        Some(head) => Ok(Some(head)),
        None => Err(Reject::Malformed(Malformed::Head)),
    }
}

/// Rule 0 of [`parse_head`]: the line starts with a method of `tchar`s and
/// the space after it, as httparse reads one. Only the first
/// `line_limit + 1` bytes are looked at, so a method too long for the line
/// is still rule 1's 501 whatever follows it; each byte is looked at once.
fn check_method(buf: &[u8], scan: &mut HeadScan, line_limit: usize) -> Result<(), Reject> {
    if scan.method_done {
        return Ok(());
    }
    let window = &buf[..buf.len().min(line_limit + 1)];
    let from = scan.method_len.min(window.len());
    scan.method_len = from + run_of(&window[from..], &TCHAR);
    match window.get(scan.method_len) {
        None => Ok(()),
        Some(b' ') if scan.method_len > 0 => {
            scan.method_done = true;
            Ok(())
        }
        Some(_) => Err(Reject::Malformed(Malformed::Method)),
    }
}

/// Where the LF ending the request line of a parsed `head` sits: httparse
/// took the line as method, target and version, each followed by exactly one
/// space or the line end, so it is found without a scan.
fn request_line_len(buf: &[u8], head: &Head) -> usize {
    let version_end = (head.target.start + head.target.len) as usize + b" HTTP/1.1".len();
    let lf = if buf[version_end] == b'\r' {
        version_end + 1
    } else {
        version_end
    };
    debug_assert_eq!(buf[lf], b'\n', "the request line ends where httparse said");
    lf
}

/// Allowance for method, spaces and version around a target of the largest
/// permitted length, so the early 414 never fires on a request that would pass.
const MAX_LINE_OVERHEAD: usize = 64;

/// The verdict on a request line (starting `buf`) longer than `line_limit`,
/// by whichever rule's trigger came first: 431 when `max_head_bytes` is
/// smaller still (rule 3 fired first, however the bytes arrived); 501 when
/// the method alone is longer than a line may be (RFC 9112 §3: a method
/// longer than any the server implements); else 414. The first
/// `line_limit + 1` bytes decide, and they are there whenever the line is
/// found too long, however the input was split.
#[cold]
fn line_too_long(buf: &[u8], config: &Config, line_limit: usize) -> Reject {
    if config.max_head_bytes < line_limit {
        Reject::HeadTooLarge
    } else if run_of(buf, &TCHAR) > line_limit {
        Reject::NotImplemented(Unsupported::LongMethod)
    } else {
        Reject::TargetTooLong
    }
}

/// Finds the end of a head: the index just past an empty line (CRLF CRLF or, as
/// RFC 9112 §2.2 lets a recipient accept, LF LF).
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let lf = i + off;
        if lf >= 1 && buf[lf - 1] == b'\n' {
            return Some(lf + 1);
        }
        if lf >= 2 && buf[lf - 1] == b'\r' && buf[lf - 2] == b'\n' {
            return Some(lf + 1);
        }
        i = lf + 1;
    }
    None
}

/// Calls `f` with room for `config.max_headers` fields, on the stack when
/// that fits.
// Inlined: a call of its own costs about 20 instructions per request.
#[inline]
fn with_headers<'b, R>(
    config: &Config,
    f: impl FnOnce(&mut [MaybeUninit<httparse::Header<'b>>]) -> R,
) -> R {
    if config.max_headers <= STACK_HEADERS {
        let mut stack = [const { MaybeUninit::<httparse::Header<'b>>::uninit() }; STACK_HEADERS];
        f(&mut stack[..config.max_headers])
    } else {
        let mut heap = Vec::with_capacity(config.max_headers);
        heap.resize_with(config.max_headers, MaybeUninit::uninit);
        f(&mut heap)
    }
}

/// Runs httparse on a complete request line (LF included) of a head still
/// arriving, to reject a bad one before the rest of the head.
// Out of line: inlined, its room for fields (4 KiB) made every parse pay for
// a stack probe and a larger frame (3 instructions per request).
#[inline(never)]
fn check_request_line(line: &[u8], config: &Config) -> Result<(), Reject> {
    with_headers(config, |headers| {
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(line, headers) {
            Ok(_) => Ok(()),
            Err(httparse::Error::Version) if later_minor_digit_at(line).is_some() => Ok(()),
            Err(e) => Err(reject_for(e, line)),
        }
    })
}

fn reject_for(e: httparse::Error, buf: &[u8]) -> Reject {
    match e {
        httparse::Error::TooManyHeaders => Reject::TooManyHeaders,
        httparse::Error::Version if version_word(buf).is_some_and(is_http_version) => {
            Reject::VersionNotSupported
        }
        _ => Reject::Malformed(Malformed::Head),
    }
}

/// The version word of a request line that httparse refused at its version.
/// httparse gets there only after a valid method and target, each followed by
/// one space, so the word is everything after the second space up to the end
/// of the line: `GE T / HTTP/1.1` has the word `/ HTTP/1.1`, which is no
/// version at all. `buf` starts with the request line (core drops the empty
/// lines before it); `None` until the line is complete.
fn version_word(buf: &[u8]) -> Option<&[u8]> {
    let line = &buf[..buf.iter().position(|&b| b == b'\n')?];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.splitn(3, |&b| b == b' ').nth(2)
}

/// `HTTP/x.y` as RFC 9112 §2.3 spells a version: case-sensitive, one digit
/// each side of the dot. Such a word names a version we lack (505); anything
/// else in its place is a malformed request line (400).
fn is_http_version(word: &[u8]) -> bool {
    matches!(word, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
}

/// Where in `buf` the minor digit of an `HTTP/1.x` version with x > 1 sits.
/// RFC 9110 §2.5: a recipient should process a message with a later minor
/// version of a major version it implements as the highest minor version it
/// implements — here HTTP/1.1 — since minor versions are backwards-compatible
/// by design. httparse knows only 1.0 and 1.1, so [`parse_complete`] parses a
/// copy that says 1.1.
fn later_minor_digit_at(buf: &[u8]) -> Option<usize> {
    match version_word(buf)? {
        word @ [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9'] => {
            Some(Span::of(buf, word).start as usize + 7)
        }
        _ => None,
    }
}

/// Parses a head with httparse; `Ok(None)` if it is not complete.
// Inlined: it is most of `parse_head`, whose common path calls it once.
#[inline]
fn parse_complete(
    buf: &[u8],
    config: &Config,
    fields: &mut Vec<FieldSpan>,
) -> Result<Option<Head>, Reject> {
    if let Some(line) = line::simple(buf) {
        if let Some(parsed) = parse_simple(buf, &line, config, fields) {
            return parsed;
        }
    }
    parse_general(buf, config, fields)
}

/// A head whose request line is simple ([`line::simple`]) has room for this
/// many fields, read by [`fields::simple`] or else by httparse into an array
/// of this many, which must be initialized; a head with more goes to
/// [`parse_general`].
const SIMPLE_HEADERS: usize = 16;

/// Parses a head whose request line [`line::simple`] has read: its fields
/// with [`fields::simple`] when they are all simple, else with httparse;
/// `None` if it has more than [`SIMPLE_HEADERS`] fields and more are
/// allowed, for [`parse_general`] to parse with room for them all.
#[inline]
fn parse_simple(
    buf: &[u8],
    line: &line::Line,
    config: &Config,
    fields: &mut Vec<FieldSpan>,
) -> Option<Result<Option<Head>, Reject>> {
    let room = config.max_headers.min(SIMPLE_HEADERS);
    let len = match fields::simple(buf, line.len, room, fields) {
        Some(len) => len,
        None => match httparse_fields(buf, line.len, room, config, fields)? {
            Ok(Some(len)) => len,
            Ok(None) => return Some(Ok(None)),
            Err(reject) => return Some(Err(reject)),
        },
    };
    let parsed = Parsed {
        method: &buf[..line.method_len],
        target: &buf[line.method_len + 1..line.target_end],
        path_and_query: Some((
            &buf[line.method_len + 1..line.path_end],
            buf.get(line.path_end + 1..line.target_end),
        )),
        minor_version: line.minor_version,
        len,
    };
    Some(head_of(buf, parsed, config, fields))
}

/// Parses the fields that start at `at` in `buf` with httparse, for
/// [`parse_simple`]; returns where the head ends, or `Ok(None)` if it has
/// not ended yet.
// Out of line: most heads never come here, and its array of headers would
// make the common path's frame larger.
#[inline(never)]
fn httparse_fields(
    buf: &[u8],
    at: usize,
    room: usize,
    config: &Config,
    fields: &mut Vec<FieldSpan>,
) -> Option<Result<Option<usize>, Reject>> {
    let mut headers = [httparse::EMPTY_HEADER; SIMPLE_HEADERS];
    match httparse::parse_headers(&buf[at..], &mut headers[..room]) {
        Ok(httparse::Status::Complete((len, headers))) => {
            store_fields(buf, headers, fields);
            Some(Ok(Some(at + len)))
        }
        Ok(httparse::Status::Partial) => Some(Ok(None)),
        Err(httparse::Error::TooManyHeaders) if config.max_headers > SIMPLE_HEADERS => None,
        Err(e) => Some(Err(reject_for(e, buf))),
    }
}

/// Stores the fields httparse found in `buf` as spans.
fn store_fields(buf: &[u8], headers: &[httparse::Header<'_>], fields: &mut Vec<FieldSpan>) {
    fields.clear();
    fields.extend(headers.iter().map(|h| FieldSpan {
        name: Span::of(buf, h.name.as_bytes()),
        value: Span::of(buf, h.value),
    }));
}

/// Parses a head with httparse alone: any request line, any number of fields.
#[inline(never)]
fn parse_general(
    buf: &[u8],
    config: &Config,
    fields: &mut Vec<FieldSpan>,
) -> Result<Option<Head>, Reject> {
    with_headers(config, |headers| {
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(buf, headers) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => {
                return match (e, later_minor_digit_at(buf)) {
                    (httparse::Error::Version, Some(at)) => {
                        parse_as_http11(buf, at, config, fields)
                    }
                    _ => Err(reject_for(e, buf)),
                };
            }
        };
        let target = req.path.unwrap_or_default().as_bytes();
        // RFC 3986: a URI is ASCII (anything else is percent-encoded), and
        // a request target has no fragment (RFC 9112 §3.2). A simple line
        // has neither (see `line`); httparse takes both.
        if target.iter().any(|&b| b == b'#' || !b.is_ascii()) {
            return Err(Reject::Malformed(Malformed::TargetBytes));
        }
        let parsed = Parsed {
            method: req.method.unwrap_or_default().as_bytes(),
            target,
            minor_version: req.version.unwrap_or(1),
            len,
            path_and_query: None,
        };
        store_fields(buf, req.headers, fields);
        head_of(buf, parsed, config, fields)
    })
}

/// A head as httparse has read it (or would have: see [`line`]), but its
/// fields, which are stored as spans.
struct Parsed<'b> {
    method: &'b [u8],
    target: &'b [u8],
    /// The target's path and query when they were found with the line.
    path_and_query: Option<(&'b [u8], Option<&'b [u8]>)>,
    minor_version: u8,
    /// Bytes of the head, blank line included.
    len: usize,
}

/// Applies the rules that httparse does not know to a parsed head and its
/// `fields`: the form of its target and the header rules.
#[inline(always)]
fn head_of(
    buf: &[u8],
    parsed: Parsed<'_>,
    config: &Config,
    fields: &[FieldSpan],
) -> Result<Option<Head>, Reject> {
    let Parsed {
        method,
        target,
        minor_version,
        len,
        path_and_query,
    } = parsed;
    if target.len() > config.max_target_bytes {
        return Err(Reject::TargetTooLong);
    }
    let standard_method = standard_method(method);
    let (path, query) = match path_and_query {
        Some(found) if standard_method != Some(Method::Connect) => found,
        _ => split_target(standard_method, target)?,
    };
    let mut rules = HeaderRules::default();
    for field in fields {
        // Most fields are none of the rules' (see `HeaderRules::observe`):
        // their first letter tells, before any span is cut.
        if HeaderRules::may_concern(buf, field.name) {
            rules.observe(field.name.get(buf), field.value.get(buf))?;
        }
    }
    let framing = rules.framing(minor_version, config)?;
    Ok(Some(Head {
        method: Span::of(buf, method),
        standard_method,
        target: Span::of(buf, target),
        path: Span::of(buf, path),
        query: query.map(|q| Span::of(buf, q)),
        minor_version,
        len,
        framing,
        keep_alive: !rules.close_token && (minor_version == 1 || rules.keep_alive_token),
        expect_continue: rules.expect_continue && minor_version == 1,
        is_head_method: standard_method == Some(Method::Head),
        // A body that streams comes after the request is handed over, and
        // the switch would have to wait for it: such an upgrade is ignored.
        upgrade: rules.upgrade_token
            && rules.upgrade_field
            && minor_version == 1
            && (framing == Framing::Empty || !config.stream_request_bodies),
    }))
}

/// Parses a head whose version is a later HTTP/1 minor (see
/// [`later_minor_digit_at`]) from a copy whose version reads `HTTP/1.1`. The
/// copy has the same offsets, so the spans taken from it index `buf`. Only
/// such rare heads pay for the copy.
fn parse_as_http11(
    buf: &[u8],
    minor_digit_at: usize,
    config: &Config,
    fields: &mut Vec<FieldSpan>,
) -> Result<Option<Head>, Reject> {
    let mut as_http11 = buf.to_vec();
    as_http11[minor_digit_at] = b'1';
    parse_complete(&as_http11, config, fields)
}

/// A method RFC 9110 defines, or PATCH (RFC 5789).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
}

impl Method {
    /// Every method, in the order of the names in [`Method::name`].
    const ALL: [Method; 9] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Connect,
        Method::Options,
        Method::Trace,
        Method::Patch,
    ];

    /// The method's name, as sent (methods are case-sensitive): an index
    /// into a table, not a `match`, which would cost a jump per read.
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 9] = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ];
        NAMES[self as usize]
    }
}

/// `method` as a [`Method`]; `None` for an extension method. The names are
/// tried in turn, GET first: most requests are GETs, found in one
/// comparison.
// Always inlined: out of line, the one comparison a GET needs came with a
// call around it (17 instructions per request).
#[inline(always)]
fn standard_method(method: &[u8]) -> Option<Method> {
    Method::ALL
        .into_iter()
        .find(|m| m.name().as_bytes() == method)
}

/// Checks the request-target form (RFC 9112 §3.2) and returns its path and
/// query: origin-form, absolute-form (routed by its path: the authority is not
/// used to pick a resource), and asterisk-form with OPTIONS only, whose path is
/// `*`. CONNECT (authority-form) is not served.
fn split_target(method: Option<Method>, target: &[u8]) -> Result<(&[u8], Option<&[u8]>), Reject> {
    if method == Some(Method::Connect) {
        return Err(Reject::NotImplemented(Unsupported::Connect));
    }
    if target.starts_with(b"/") {
        return path_and_query_of(target);
    }
    if target == b"*" {
        return if method == Some(Method::Options) {
            Ok((target, None))
        } else {
            Err(Reject::Malformed(Malformed::AsteriskTarget))
        };
    }
    if let Some(after_authority) = absolute_form_rest(target) {
        return path_and_query_of(after_authority);
    }
    Err(Reject::Malformed(Malformed::TargetForm))
}

/// The path and query of an origin-form target, or of what follows the
/// authority of an absolute-form one; refused if a `%` in the path does not
/// start two hex digits (RFC 3986 §2.1). Decoded, such a path would be
/// ambiguous (`/a%zz` and `/a%25zz` alike), and nginx refuses it too. The
/// query is the application's to decode, and is left as it is.
fn path_and_query_of(target: &[u8]) -> Result<(&[u8], Option<&[u8]>), Reject> {
    let (path, query) = split_query(target);
    let mut rest = path;
    while let Some(at) = rest.iter().position(|&b| b == b'%') {
        match rest.get(at + 1..at + 3) {
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => rest = &rest[at + 3..],
            _ => return Err(Reject::Malformed(Malformed::PathEscape)),
        }
    }
    Ok((path, query))
}

/// The path and the query (without its `?`) of what follows an authority.
fn split_query(path_and_query: &[u8]) -> (&[u8], Option<&[u8]>) {
    // A table scan, not a search: targets are short, and memchr's setup
    // costs more than the scan.
    let at = run_of(path_and_query, &NOT_QUESTION_MARK);
    match path_and_query.get(at + 1..) {
        Some(query) => (&path_and_query[..at], Some(query)),
        None => (path_and_query, None),
    }
}

/// Every byte but `?`, which ends a path.
const NOT_QUESTION_MARK: [bool; 256] = {
    let mut table = [true; 256];
    table[b'?' as usize] = false;
    table
};

/// For `scheme "://" authority rest`, with a scheme of
/// ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) and an authority that names a
/// host, the rest: the path (possibly empty) and query. Userinfo (`user@`) is
/// refused with the other bytes a host cannot hold, as RFC 9110 §4.2.4 lets a
/// recipient do.
fn absolute_form_rest(target: &[u8]) -> Option<&[u8]> {
    let colon = target.windows(3).position(|w| w == b"://")?;
    let (scheme, rest) = (&target[..colon], &target[colon + 3..]);
    let mut chars = scheme.iter();
    let scheme_ok = chars.next().is_some_and(u8::is_ascii_alphabetic)
        && chars.all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    let authority_end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(authority_end);
    // RFC 9110 §4.2.1: an http URI with an empty host must be rejected.
    let host_ok = host_of(authority).is_some_and(|host| !host.is_empty());
    (scheme_ok && host_ok).then_some(rest)
}

/// The uri-host of `value` if it is `uri-host [ ":" port ]` (RFC 9110 §7.2,
/// RFC 3986 §3.2.2): an IP-literal in brackets, or a reg-name — which covers
/// IPv4 addresses — of unreserved, pct-encoded and sub-delims characters; the
/// port is digits. The host may be empty: RFC 9112 §3.2 has a client send an
/// empty Host when the target has no authority.
// Always inlined into every request's Host check (`#[inline]` left it a
// call: 13 instructions more per request); the general path is not.
#[inline(always)]
fn host_of(value: &[u8]) -> Option<&[u8]> {
    // Most hosts are plain reg-names, with or without a port: one pass over
    // a table finds them. Anything else takes the general path.
    let plain = run_of(value, &REG_NAME_BYTES);
    match &value[plain..] {
        [] => Some(value),
        [b':', digits @ ..] if digits.iter().all(u8::is_ascii_digit) => Some(&value[..plain]),
        _ => any_host_of(value),
    }
}

/// [`host_of`] for a host that is not a plain reg-name: an IP-literal, or a
/// reg-name with percent-encoding, or none at all. Kept out of line: inlined,
/// it crowds the common path (about 30 instructions more per request).
#[inline(never)]
fn any_host_of(value: &[u8]) -> Option<&[u8]> {
    let (host, port) = match value.strip_prefix(b"[") {
        Some(literal) => {
            let end = literal.iter().position(|&b| b == b']')?;
            is_ip_literal(&literal[..end]).then_some(())?;
            (&value[..end + 2], &literal[end + 1..])
        }
        None => {
            let (host, port) =
                value.split_at(value.iter().position(|&b| b == b':').unwrap_or(value.len()));
            is_reg_name(host).then_some(())?;
            (host, port)
        }
    };
    match port {
        [] => Some(host),
        [b':', digits @ ..] if digits.iter().all(u8::is_ascii_digit) => Some(host),
        _ => None,
    }
}

/// IPv6address or IPvFuture (`v` 1*HEXDIG `.` 1*( unreserved / sub-delims /
/// `:` )), as found between the brackets of an IP-literal.
fn is_ip_literal(inside: &[u8]) -> bool {
    if let [b'v' | b'V', future @ ..] = inside {
        let Some(dot) = future.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (version, address) = (&future[..dot], &future[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !address.is_empty()
            && address
                .iter()
                .all(|&b| is_unreserved_or_sub_delim(b) || b == b':');
    }
    std::str::from_utf8(inside).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// `*( unreserved / pct-encoded / sub-delims )`: every `%` starts two hex digits.
fn is_reg_name(name: &[u8]) -> bool {
    let mut at = 0;
    while at < name.len() {
        if name[at] == b'%' {
            match name.get(at + 1..at + 3) {
                Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => at += 3,
                _ => return false,
            }
        } else if is_unreserved_or_sub_delim(name[at]) {
            at += 1;
        } else {
            return false;
        }
    }
    true
}

/// RFC 3986 unreserved (ALPHA DIGIT `-._~`) and sub-delims (`!$&'()*+,;=`).
fn is_unreserved_or_sub_delim(b: u8) -> bool {
    REG_NAME_BYTES[usize::from(b)]
}

/// [`is_unreserved_or_sub_delim`] as a table: every request's Host is
/// checked byte by byte, so one lookup each.
const REG_NAME_BYTES: [bool; 256] = alphanumeric_and(b"-._~!$&'()*+,;=");

/// What the framing and persistence headers said, gathered in one pass.
#[derive(Default)]
struct HeaderRules {
    hosts: u32,
    content_length: Option<u64>,
    content_length_too_large: bool,
    transfer_encoding: bool,
    last_coding_chunked: bool,
    chunked_count: u32,
    chunked_parameters: bool,
    unknown_coding: bool,
    close_token: bool,
    keep_alive_token: bool,
    upgrade_token: bool,
    upgrade_field: bool,
    expect_continue: bool,
}

impl HeaderRules {
    /// Whether the field whose name is `name` in `buf` may be one of those
    /// [`observe`](Self::observe) looks at: most fields are not, and the
    /// first letter tells at once. The names compared are lowercase letters
    /// and `-`, and a name is a token: the only token bytes that setting the
    /// 0x20 bit turns into such a byte are that letter in either case and
    /// `-` itself, so no case table is needed.
    #[inline(always)]
    fn may_concern(buf: &[u8], name: Span) -> bool {
        let first = buf.get(name.start as usize).map_or(0, |&b| b | 0x20);
        matches!(first, b'c' | b'e' | b'h' | b't' | b'u')
    }

    /// Takes one field as httparse gives it (or would: see [`fields`]): its
    /// value has no whitespace around it (httparse skips SP and HTAB before
    /// a value and strips SP, HTAB, CR and LF after it, and no other
    /// whitespace byte is valid in one), so values are not trimmed again
    /// here. Fields [`may_concern`](Self::may_concern) rules out need not
    /// come here; names are compared in any case as it explains.
    #[inline(always)]
    fn observe(&mut self, name: &[u8], value: &[u8]) -> Result<(), Reject> {
        let first = name.first().map_or(0, |&b| b | 0x20);
        let is = |field: &str| {
            first == field.as_bytes()[0]
                && name.len() == field.len()
                && name
                    .iter()
                    .zip(field.bytes())
                    .fold(0, |differ, (a, b)| differ | ((a | 0x20) ^ b))
                    == 0
        };
        match name.len() {
            4 if is("host") => {
                self.hosts += 1;
                // RFC 9112 §3.2: a Host with an invalid value is a 400.
                if host_of(value).is_none() {
                    return Err(Reject::Malformed(Malformed::Host));
                }
            }
            14 if is("content-length") => self.content_length(value)?,
            17 if is("transfer-encoding") => self.transfer_codings(value),
            // Most clients send a single `keep-alive` or `close`: no list to split.
            10 if is("connection") => match value {
                b"keep-alive" => self.keep_alive_token = true,
                b"close" => self.close_token = true,
                _ => self.connection_options(value),
            },
            7 if is("upgrade") => self.upgrade_field |= !value.is_empty(),
            6 if is("expect") => self.expectations(value),
            _ => {}
        }
        Ok(())
    }

    // The list walks below are kept out of line: most requests have no such
    // list, and inlined they make every header of every request dearer.
    #[inline(never)]
    fn transfer_codings(&mut self, value: &[u8]) {
        self.transfer_encoding = true;
        for coding in tokens(value) {
            // Only a coding's name matters here, but `chunked` has no
            // parameters: a recipient that took `chunked;x` for another
            // coding would frame the body otherwise.
            let name_end = coding.iter().position(|&b| b == b';');
            let name = coding[..name_end.unwrap_or(coding.len())].trim_ascii();
            let chunked = name.eq_ignore_ascii_case(b"chunked");
            self.chunked_parameters |= chunked && name_end.is_some();
            self.chunked_count += u32::from(chunked);
            self.unknown_coding |= !chunked;
            self.last_coding_chunked = chunked;
        }
    }

    /// `Expect` is a list (RFC 9110 §10.1.1); `100-continue` is the one
    /// expectation defined, and any others are ignored.
    #[inline(never)]
    fn expectations(&mut self, value: &[u8]) {
        self.expect_continue |= tokens(value).any(|e| e.eq_ignore_ascii_case(b"100-continue"));
    }

    #[inline(never)]
    fn connection_options(&mut self, value: &[u8]) {
        for token in tokens(value) {
            self.close_token |= is_word(token, b"close");
            self.keep_alive_token |= is_word(token, b"keep-alive");
            self.upgrade_token |= is_word(token, b"upgrade");
        }
    }

    fn content_length(&mut self, digits: &[u8]) -> Result<(), Reject> {
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return self.content_length_list(digits);
        }
        let parsed = digits.iter().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        let Some(n) = parsed else {
            // Syntactically valid but beyond any body we would accept.
            self.content_length_too_large = true;
            return Ok(());
        };
        match self.content_length {
            Some(seen) if seen != n => Err(Reject::Malformed(Malformed::ConflictingLengths)),
            _ => {
                self.content_length = Some(n);
                Ok(())
            }
        }
    }

    /// A `Content-Length` that is a list (`5, 5`) means what as many fields
    /// would (RFC 9110 §8.6): each element is a length, and they must agree.
    /// An empty element, or anything else that is not digits, is refused.
    #[cold]
    fn content_length_list(&mut self, value: &[u8]) -> Result<(), Reject> {
        if !value.contains(&b',') {
            return Err(Reject::Malformed(Malformed::ContentLength));
        }
        value
            .split(|&b| b == b',')
            .try_for_each(|element| self.content_length(element.trim_ascii()))
    }

    fn framing(&self, minor_version: u8, config: &Config) -> Result<Framing, Reject> {
        if minor_version == 1 && self.hosts != 1 {
            return Err(Reject::Malformed(Malformed::NoHost));
        }
        if self.hosts > 1 {
            return Err(Reject::Malformed(Malformed::ManyHosts));
        }
        let has_length = self.content_length.is_some() || self.content_length_too_large;
        if self.transfer_encoding {
            if has_length {
                return Err(Reject::Malformed(Malformed::LengthAndCoding));
            }
            if minor_version == 0 {
                return Err(Reject::Malformed(Malformed::CodingInHttp10));
            }
            if !self.last_coding_chunked || self.chunked_count != 1 {
                return Err(Reject::Malformed(Malformed::NotChunkedLast));
            }
            if self.chunked_parameters {
                return Err(Reject::Malformed(Malformed::ChunkedParameters));
            }
            if self.unknown_coding {
                return Err(Reject::NotImplemented(Unsupported::TransferCoding));
            }
            return Ok(Framing::Chunked);
        }
        if self.content_length_too_large {
            return Err(Reject::BodyTooLarge);
        }
        match self.content_length {
            Some(n) if n > config.body_limit() => Err(Reject::BodyTooLarge),
            Some(0) | None => Ok(Framing::Empty),
            Some(n) => Ok(Framing::Length(n)),
        }
    }
}

/// Whether `token` is `lower`, a lowercase word, in any case. Clients send
/// the lowercase spelling most of the time: a plain comparison settles that
/// first.
fn is_word(token: &[u8], lower: &[u8]) -> bool {
    token == lower || token.eq_ignore_ascii_case(lower)
}

/// The non-empty elements of a comma-separated list, trimmed of whitespace.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Option<Head>, Reject> {
        parse_with(input, &Config::default())
    }

    fn parse_with(input: &[u8], config: &Config) -> Result<Option<Head>, Reject> {
        parse_head(input, &mut HeadScan::default(), config, &mut Vec::new())
    }

    /// Whole, byte by byte, and with trailing bytes: all three must agree.
    fn parse_three_ways(input: &[u8]) -> Result<Option<Head>, Reject> {
        let whole = parse_two_ways_with(input, &Config::default());
        let mut trailing = input.to_vec();
        trailing.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let with_trailing = parse(&trailing);
        if whole.as_ref().is_ok_and(Option::is_some) {
            assert_eq!(whole, with_trailing, "whole vs with trailing bytes");
        }
        whole
    }

    /// Whole and byte by byte under `config`: both must agree.
    fn parse_two_ways_with(input: &[u8], config: &Config) -> Result<Option<Head>, Reject> {
        let whole = parse_with(input, config);
        let mut scan = HeadScan::default();
        let mut fields = Vec::new();
        let bytewise = (1..=input.len())
            .map(|end| parse_head(&input[..end], &mut scan, config, &mut fields))
            .find(|verdict| !matches!(verdict, Ok(None)))
            .unwrap_or(Ok(None));
        assert_eq!(whole, bytewise, "whole vs byte by byte");
        whole
    }

    fn status(input: &[u8]) -> u16 {
        parse_three_ways(input).unwrap_err().status()
    }

    #[test]
    fn parses_a_simple_get() {
        let head = parse_three_ways(b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.minor_version, 1);
        assert_eq!(head.framing, Framing::Empty);
        assert!(head.keep_alive);
        assert_eq!(head.len, 30);
    }

    #[test]
    fn incomplete_head_needs_more() {
        assert_eq!(parse_three_ways(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
    }

    #[test]
    fn accepts_lf_only_line_endings() {
        let head = parse_three_ways(b"GET / HTTP/1.1\nHost: x\n\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.len, 24);
    }

    #[test]
    fn rejects_http11_without_exactly_one_host() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert!(parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
    }

    #[test]
    fn content_length_must_be_digits_and_agree() {
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n"),
            400
        );
        // A list means what as many fields would: equal lengths are one.
        let list = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n";
        assert_eq!(
            parse_three_ways(list).unwrap().unwrap().framing,
            Framing::Length(5)
        );
        for refused in ["5, 6", "5,", ",5", "5,,5", "5, +5", "5 5", ","] {
            let head = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {refused}\r\n\r\n");
            assert_eq!(status(head.as_bytes()), 400, "{refused}");
        }
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            400
        );
        let same = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(parse(same).unwrap().unwrap().framing, Framing::Length(5));
    }

    #[test]
    fn content_length_over_the_limit_is_413() {
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n"),
            413
        );
        assert_eq!(
            status(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"
            ),
            413
        );
    }

    #[test]
    fn transfer_encoding_rules() {
        let te = |v: &str| {
            let req = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {v}\r\n\r\n");
            parse_three_ways(req.as_bytes()).map(|h| h.unwrap().framing)
        };
        assert_eq!(te("chunked"), Ok(Framing::Chunked));
        assert_eq!(te("Chunked"), Ok(Framing::Chunked));
        assert_eq!(te("gzip").unwrap_err().status(), 400);
        assert_eq!(te("chunked, gzip").unwrap_err().status(), 400);
        assert_eq!(te("chunked, chunked").unwrap_err().status(), 400);
        assert_eq!(te("gzip, chunked").unwrap_err().status(), 501);
        assert_eq!(te("x-custom, chunked").unwrap_err().status(), 501);
        assert_eq!(te("gzip;level=1, chunked").unwrap_err().status(), 501);
        // `chunked` has no parameters (RFC 9112 §7.1).
        for with_parameters in [
            "chunked;q=1",
            "chunked ; x",
            "chunked;",
            "gzip, CHUNKED;a=b",
        ] {
            let reject = te(with_parameters).unwrap_err();
            assert_eq!(
                reject,
                Reject::Malformed(Malformed::ChunkedParameters),
                "{with_parameters}"
            );
        }
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn major_versions_other_than_1_are_505() {
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/3.0\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/0.9\r\n\r\n"), 505);
    }

    #[test]
    fn later_http1_minor_versions_are_processed_as_11() {
        let input = b"POST /a HTTP/1.2\r\nHost: x\r\nContent-Length: 3\r\n\r\n";
        let head = parse_three_ways(input).unwrap().unwrap();
        assert_eq!(head.minor_version, 1);
        assert_eq!(head.framing, Framing::Length(3));
        assert_eq!(head.target.get(input), b"/a");
        assert_eq!(head.len, input.len());
        assert!(head.keep_alive);
        // As 1.1, it needs its Host.
        assert_eq!(status(b"GET / HTTP/1.9\r\n\r\n"), 400);
    }

    #[test]
    fn a_request_line_that_is_not_method_target_version_is_400() {
        for line in [
            "GE T / HTTP/1.1",
            "GET / / HTTP/1.1",
            "GET / HTTP/2.0 x",
            "GET /  HTTP/1.1",
            "GET / HTTQ/1.1",
            "GET / http/1.1",
            "GET / HTTP/1.10",
            "GET / HTTP/12.0",
            "GET / HTTP/2",
            "GET / HTTP/a.b",
            "GET /",
        ] {
            let input = format!("{line}\r\nHost: x\r\n\r\n");
            assert_eq!(status(input.as_bytes()), 400, "{line:?}");
        }
    }

    #[test]
    fn a_bad_request_line_is_rejected_before_the_head_ends() {
        assert_eq!(parse(b"GET / HTTP/2.0\r\n").unwrap_err().status(), 505);
        assert_eq!(parse(b"G@T / HTTP/1.1\r\n").unwrap_err().status(), 400);
        assert_eq!(parse(b"GE T / HTTP/1.1\r\n").unwrap_err().status(), 400);
        assert_eq!(parse(b"GET / HTTP/1.2\r\n"), Ok(None));
    }

    #[test]
    fn errors_wait_for_a_whole_line_or_head_so_splits_agree() {
        // Unfinished line, unfinished head: judged only once complete, as a
        // byte-by-byte arrival would be; but a method is judged as it comes.
        assert_eq!(parse_three_ways(b"GET / H@"), Ok(None));
        assert_eq!(
            parse_three_ways(b"GET / HTTP/1.1\r\nBad@Name: x\r\n"),
            Ok(None)
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\nBad@Name: x\r\n\r\n"), 400);
    }

    #[test]
    fn a_line_that_starts_with_no_method_is_400_as_soon_as_that_shows() {
        let no_method = Err(Reject::Malformed(Malformed::Method));
        for start in [
            &b"\x16\x03\x01\x00\xa5\x01"[..],
            b"G@T",
            b" / HTTP/1.1",
            b"GET\r",
            b"GET\t/",
            b"\xc3\xa9T",
        ] {
            assert_eq!(parse_three_ways(start), no_method, "{start:?}");
            let whole = [start, b" / HTTP/1.1\r\nHost: x\r\n\r\n"].concat();
            assert_eq!(parse_three_ways(&whole), no_method, "{whole:?}");
        }
        // A bad byte past the first `line_limit + 1` comes after rule 1's.
        let line_limit = Config::default().max_target_bytes + MAX_LINE_OVERHEAD;
        let long = ["M".repeat(line_limit + 1), "@".into()].concat();
        assert_eq!(status(long.as_bytes()), 501);
        assert_eq!(parse_three_ways(b"PROPFIND"), Ok(None));
    }

    /// RFC 9112 §3: a method longer than any the server implements is a
    /// 501, whole or still arriving, before any bad byte after it; a long
    /// target after a shorter method is still a 414.
    #[test]
    fn a_method_too_long_for_the_line_is_501() {
        let line_limit = Config::default().max_target_bytes + MAX_LINE_OVERHEAD;
        let method = "M".repeat(line_limit + 1);
        let whole = format!("{method} / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status(whole.as_bytes()), 501);
        assert_eq!(
            parse(method.as_bytes()),
            Err(Reject::NotImplemented(Unsupported::LongMethod))
        );
        let head = format!("{method}\x01 / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            status(head.as_bytes()),
            501,
            "the method is long before its bad byte"
        );
        let shorter = "M".repeat(100);
        let target = "/".repeat(line_limit);
        assert_eq!(
            status(format!("{shorter} {target} HTTP/1.1\r\n").as_bytes()),
            414
        );
        let long_but_fits = "M".repeat(line_limit - 16);
        let fits = format!("{long_but_fits} / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(parse_three_ways(fits.as_bytes()).unwrap().is_some());
    }

    /// The edges of rules 0 and 1, whole and byte by byte: a line whose LF
    /// is at `line_limit` is read, one byte longer is a 414; a method as
    /// long as a line may be is not too long alone (414, not 501); a bad
    /// byte at `line_limit` is still in the method's window (400).
    #[test]
    fn the_longest_request_line_is_read_and_one_byte_more_is_not() {
        let line_limit = Config::default().max_target_bytes + MAX_LINE_OVERHEAD;
        // The method, a space, `/`, ` HTTP/1.1` and CR come before the LF.
        let line =
            |method_len: usize| format!("{} / HTTP/1.1\r\nHost: x\r\n\r\n", "M".repeat(method_len));
        let longest = line(line_limit - 12);
        assert_eq!(longest.find('\n'), Some(line_limit));
        assert!(parse_three_ways(longest.as_bytes()).unwrap().is_some());
        assert_eq!(status(line(line_limit - 11).as_bytes()), 414);
        assert_eq!(status(line(line_limit).as_bytes()), 414);
        assert_eq!(status(line(line_limit + 1).as_bytes()), 501);
        let bad_byte_last_in_window = ["M".repeat(line_limit), "@".into()].concat();
        assert_eq!(status(bad_byte_last_in_window.as_bytes()), 400);
    }

    /// Rules 1 and 3 fire at the same byte when `max_head_bytes` is the
    /// line limit: rule 1 comes first, however the bytes arrive.
    #[test]
    fn a_line_too_long_at_the_head_limit_is_414() {
        let line_limit = Config::default().max_target_bytes + MAX_LINE_OVERHEAD;
        let config = Config {
            max_head_bytes: line_limit,
            ..Config::default()
        };
        let line = format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(line_limit)
        );
        assert_eq!(
            parse_two_ways_with(line.as_bytes(), &config),
            Err(Reject::TargetTooLong)
        );
    }

    /// Rule 3's trigger comes first when the head may be shorter than a
    /// line: then a line too long is a head too large, however it arrives.
    #[test]
    fn a_line_too_long_for_a_smaller_head_limit_is_431() {
        let config = Config {
            max_head_bytes: 4096,
            ..Config::default()
        };
        for line in [
            format!("{} / HTTP/1.1\r\nHost: x\r\n\r\n", "M".repeat(9000)),
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000)),
        ] {
            assert_eq!(
                parse_two_ways_with(line.as_bytes(), &config),
                Err(Reject::HeadTooLarge)
            );
        }
    }

    #[test]
    fn long_targets_are_414_and_big_heads_431() {
        let target = "/".repeat(8 * 1024 + 1);
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(parse(req.as_bytes()).unwrap_err().status(), 414);
        // Early, before the line ends:
        let long = format!("GET {}", "/".repeat(9 * 1024));
        assert_eq!(parse(long.as_bytes()).unwrap_err().status(), 414);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "v".repeat(16 * 1024)
        );
        assert_eq!(parse(big.as_bytes()).unwrap_err().status(), 431);
        let unfinished = format!("GET / HTTP/1.1\r\nX: {}", "v".repeat(16 * 1024));
        assert_eq!(parse(unfinished.as_bytes()).unwrap_err().status(), 431);
    }

    /// A target too long is 414 whatever the fields hold: the rules that
    /// see the fields come after the target's.
    #[test]
    fn a_target_too_long_is_414_before_a_field_at_fault() {
        let config = Config {
            max_target_bytes: 8,
            ..Config::default()
        };
        let req = b"GET /123456789 HTTP/1.1\r\nHost: a b\r\n\r\n";
        assert_eq!(parse_with(req, &config).unwrap_err().status(), 414);
        let fine = b"GET /1234567 HTTP/1.1\r\nHost: a b\r\n\r\n";
        assert_eq!(parse_with(fine, &config).unwrap_err().status(), 400);
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut req = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..100 {
            req.push_str(&format!("X-{i}: v\r\n"));
        }
        req.push_str("\r\n");
        assert_eq!(status(req.as_bytes()), 431);
        let config = Config {
            max_headers: 200,
            ..Config::default()
        };
        assert!(parse_with(req.as_bytes(), &config).unwrap().is_some());
    }

    #[test]
    fn target_forms() {
        assert!(parse(b"GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .is_some());
        assert!(parse(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .is_some());
        assert_eq!(status(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status(b"GET a/b HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status(b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n"), 501);
    }

    #[test]
    fn a_target_with_a_fragment_or_raw_non_ascii_is_400() {
        for target in [
            &b"/#frag"[..],
            b"/a?b#c",
            b"/\xc3\xa9",
            b"/?a=\xc3\xa9",
            b"http://x/#f",
        ] {
            let mut input = b"GET ".to_vec();
            input.extend_from_slice(target);
            input.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(
                parse_three_ways(&input),
                Err(Reject::Malformed(Malformed::TargetBytes)),
                "{}",
                String::from_utf8_lossy(target)
            );
        }
        assert_eq!(
            Malformed::TargetBytes.explain(),
            "request target has a byte a URI cannot hold"
        );
        // Percent-encoded, they are what they should be.
        assert!(parse(b"GET /%C3%A9?q=%23 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .is_some());
    }

    /// The path and query a head's spans pick out of `input`.
    fn path_and_query(input: &[u8]) -> (String, Option<String>) {
        let head = parse_three_ways(input).unwrap().unwrap();
        let text = |span: Span| String::from_utf8(span.get(input).to_vec()).unwrap();
        (text(head.path), head.query.map(text))
    }

    #[test]
    fn path_and_query_are_found_once_in_every_target_form() {
        let cases: [(&[u8], &str, Option<&str>); 6] = [
            (
                b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
                "/a/b",
                Some("x=1"),
            ),
            (b"GET /a? HTTP/1.1\r\nHost: h\r\n\r\n", "/a", Some("")),
            (
                b"GET http://127.0.0.1:8080/a/b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
                "/a/b",
                Some("x=1"),
            ),
            (b"GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", "", None),
            (b"GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n", "", Some("q")),
            (b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "*", None),
        ];
        for (input, path, query) in cases {
            let expected = (path.to_owned(), query.map(str::to_owned));
            assert_eq!(path_and_query(input), expected, "{input:?}");
        }
    }

    #[test]
    fn a_percent_that_starts_no_escape_in_the_path_is_400() {
        for target in [
            "/a%zz",
            "/a%4",
            "/%",
            "/a%2x/b",
            "/%41%",
            "/a%41%zz",
            "/abc%41/%4",
            "http://h/%zz",
        ] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let reject = parse_three_ways(head.as_bytes()).unwrap_err();
            assert_eq!(reject, Reject::Malformed(Malformed::PathEscape), "{target}");
            assert_eq!(reject.status(), 400);
        }
        // Whole escapes pass, and the query is the application's to decode.
        for target in ["/a%2F%c3%A9", "/abcdef%41", "/a?q=100%", "http://h/%41?%zz"] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            assert!(parse_three_ways(head.as_bytes()).is_ok(), "{target}");
        }
    }

    #[test]
    fn absolute_form_needs_an_authority() {
        assert_eq!(status(b"GET http:///a HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET http://?a HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    }

    fn host_status(host: &str) -> Option<u16> {
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        parse_three_ways(req.as_bytes()).err().map(|e| e.status())
    }

    #[test]
    fn host_must_be_a_host_and_port() {
        for valid in [
            "example.com",
            "example.com:8080",
            "example.com:",
            "127.0.0.1",
            "[::1]",
            "[::1]:80",
            "[::ffff:10.0.0.1]",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "b%C3%BCcher.example",
            "a_b~c!$&'()*+,;=",
            "",
        ] {
            assert_eq!(host_status(valid), None, "{valid:?}");
        }
        for invalid in [
            "a/b",
            "a?b",
            "a#b",
            "user@example.com",
            "a b",
            "a\tb",
            "example.com:80a",
            "example.com:-1",
            "a:1:2",
            "::1",
            "[::1",
            "[::g]",
            "[::1]x",
            "[v.x]",
            "%zz.example",
            "a%4",
            "\"quoted\"",
            "bücher.example",
        ] {
            assert_eq!(host_status(invalid), Some(400), "{invalid:?}");
        }
    }

    #[test]
    fn absolute_form_authority_must_name_a_host() {
        assert!(parse(b"GET http://[::1]:80/a HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap()
            .is_some());
        assert_eq!(status(b"GET http://u@h/a HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET http://:80/a HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn header_names_match_in_any_case_and_only_letter_for_letter() {
        let framing = |name: &str| {
            let req = format!("POST / HTTP/1.1\r\nhOsT: x\r\n{name}: 5\r\n\r\n");
            parse_three_ways(req.as_bytes()).unwrap().unwrap().framing
        };
        assert_eq!(framing("CONTENT-LENGTH"), Framing::Length(5));
        assert_eq!(framing("content-Length"), Framing::Length(5));
        // Another token byte in place of `-` or of a letter: another name.
        assert_eq!(framing("Content_Length"), Framing::Empty);
        assert_eq!(framing("Content-Lengtg"), Framing::Empty);
        let h = parse(b"GET / HTTP/1.1\r\nHost: x\r\nCONNECTION: close\r\n\r\n");
        assert!(!h.unwrap().unwrap().keep_alive);
    }

    /// A name as long as a rule's, with its first letter, is another field:
    /// each of these, taken for the rule's, would change the head.
    #[test]
    fn a_name_the_length_of_a_rule_s_is_not_taken_for_it() {
        // What the rules decide for a POST with these fields after its Host.
        let decided = |fields: &str| {
            let req = format!("POST / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
            let head = parse_three_ways(req.as_bytes()).unwrap().unwrap();
            let Head {
                framing,
                keep_alive,
                expect_continue,
                upgrade,
                ..
            } = head;
            (framing, keep_alive, expect_continue, upgrade)
        };
        let plain = decided("");
        for other in [
            "Hose: x",
            "Transfer-Encodinx: chunked",
            "Connectiom: close",
            "Connection: upgrade\r\nUpgradx: echo",
            "Connection: upgrade\r\nTrailer: echo",
            "Content-Length: 1\r\nExpecx: 100-continue",
            "Content-Length: 1\r\nCookie: 100-continue",
        ] {
            let mut expected = plain;
            if other.starts_with("Content-Length") {
                expected.0 = Framing::Length(1);
            }
            assert_eq!(decided(&format!("{other}\r\n")), expected, "{other}");
        }
        // And the rules' own names are taken, as a check of the above.
        let upgrade = decided("Connection: upgrade\r\nUpgrade: echo\r\n");
        assert!(upgrade.3);
        let expect = decided("Content-Length: 1\r\nExpect: 100-continue\r\n");
        assert!(expect.2);
    }

    #[test]
    fn connection_is_a_token_list() {
        let h = parse(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(!h.unwrap().unwrap().keep_alive);
        let h = parse(b"GET / HTTP/1.0\r\nConnection: Upgrade, keep-alive\r\n\r\n");
        assert!(h.unwrap().unwrap().keep_alive);
        assert!(
            !parse(b"GET / HTTP/1.0\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn expect_continue_only_for_http11() {
        let h = parse(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
        );
        assert!(h.unwrap().unwrap().expect_continue);
        let h = parse(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.unwrap().unwrap().expect_continue);
    }

    #[test]
    fn expect_is_a_list_that_may_hold_100_continue() {
        let expects = |value: &str| {
            let head = format!(
                "POST / HTTP/1.1\r\nHost: x\r\nExpect: {value}\r\nContent-Length: 1\r\n\r\n"
            );
            parse(head.as_bytes()).unwrap().unwrap().expect_continue
        };
        assert!(expects("100-continue, foo"));
        assert!(expects("foo=bar,100-CONTINUE"));
        assert!(!expects("foo"));
        assert!(!expects("100-continue-not"));
    }
}
