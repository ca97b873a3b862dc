//! Identifiers, and the request the application reads: borrowed from core's
//! buffers ([`Request`]) or copied out of them ([`OwnedRequest`]).

use std::borrow::Cow;

use bytes::Bytes;

use crate::parse::{FieldSpan, Head};

/// A connection, as core names it to the driver. Stays unique for the life of
/// a [`Server`](crate::Server): a slot reused by a later connection gets a new
/// generation, so inputs for a closed connection are ignored, not misapplied.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// A small integer, unique among open connections: suitable as a mio
    /// `Token` or a slab index in the driver.
    pub fn index(self) -> usize {
        self.index as usize
    }

    /// The whole identifier as one number, unique for the life of the server.
    pub fn as_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }
}

/// A request handed to the application, to be answered with
/// [`Server::handle_response`](crate::Server::handle_response).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    pub(crate) conn: ConnId,
    pub(crate) seq: u32,
}

impl RequestId {
    /// The connection the request arrived on.
    pub fn conn(self) -> ConnId {
        self.conn
    }

    /// The request's position on its connection: 0 for the first.
    pub fn seq(self) -> u32 {
        self.seq
    }
}

/// The HTTP version of a request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

/// A complete request, borrowed from core's buffers: reading it copies
/// nothing. Copy out what an answer given later needs, or all of it with
/// [`Request::into_owned`].
#[derive(Copy, Clone, Debug)]
pub struct Request<'a> {
    pub(crate) raw: &'a [u8],
    pub(crate) head: &'a Head,
    pub(crate) fields: &'a [FieldSpan],
    pub(crate) body: &'a [u8],
}

impl<'a> Request<'a> {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> &'a str {
        match self.head.standard_method {
            Some(method) => method.name(),
            None => text(self.head.method.get(self.raw)),
        }
    }

    /// The request target as sent: origin-form (`/a?b`), absolute-form
    /// (`http://host/a?b`), or `*`.
    pub fn target(&self) -> &'a str {
        match self.head.target.get(self.raw) {
            b"/" => ROOT,
            target => text(target),
        }
    }

    /// The target's path, without the query: what to route by. For an
    /// absolute-form target (`http://host/a?b`) it is the path after the
    /// authority (`/a`), or `/` when there is none; for `OPTIONS *` it is `*`.
    pub fn path(&self) -> &'a str {
        match self.head.path.get(self.raw) {
            b"" | b"/" => ROOT,
            path => text(path),
        }
    }

    /// The host the request is for, with its port if it names one
    /// (`example.com:8080`): the authority of an absolute-form target, which
    /// a server uses instead of `Host` (RFC 9112 §3.2.2), or else the `Host`
    /// field. Pick a virtual host by this rather than by `header("Host")`.
    /// `None` when the request names no host: an HTTP/1.0 request without
    /// `Host`, or an empty one. Core has checked it is a valid host, so it
    /// is ASCII.
    pub fn host(&self) -> Option<&'a str> {
        let target = self.head.target.get(self.raw);
        let authority = match target.windows(3).position(|w| w == b"://") {
            // Only an absolute-form target holds `://` before any `/`.
            Some(at) if !target.starts_with(b"/") => {
                let rest = &target[at + 3..];
                let end = rest.iter().position(|&b| b == b'/' || b == b'?');
                &rest[..end.unwrap_or(rest.len())]
            }
            _ => self.header("host")?,
        };
        Some(text(authority)).filter(|host| !host.is_empty())
    }

    /// The target's query, without the `?`.
    pub fn query(&self) -> Option<&'a str> {
        self.head.query.map(|q| text(q.get(self.raw)))
    }

    /// The query's `name=value` pairs in order, decoded as an HTML form
    /// encodes them (`+` is a space, `%XX` a byte; bytes that are not UTF-8
    /// become U+FFFD). A pair that needed no decoding is borrowed, not copied.
    /// Empty when there is no query.
    pub fn query_pairs(&self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> + 'a {
        form_urlencoded::parse(self.query().unwrap_or_default().as_bytes())
    }

    /// The decoded value of the first query pair whose decoded name is `name`,
    /// as [`query_pairs`](Request::query_pairs) decodes it.
    pub fn query_param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.query_pairs()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value)
    }

    /// The path with `%XX` decoded, for looking up names that may be spelled
    /// with escapes (`/J%C3%BCrgen` is `/Jürgen`); `+` stays a plus, as it
    /// means nothing special in a path. Bytes that are not UTF-8 become
    /// U+FFFD, and `%2F` becomes a `/` like any other: route by
    /// [`path`](Request::path) where that distinction matters. Borrowed when
    /// there is nothing to decode. Every `%` in a path starts an escape:
    /// core answers 400 to a path with one that does not (`/a%zz`), whose
    /// decoding would be ambiguous.
    pub fn percent_decoded_path(&self) -> Cow<'a, str> {
        percent_encoding::percent_decode_str(self.path()).decode_utf8_lossy()
    }

    /// Whether the client waits for a `100 Continue` before it sends its
    /// body (`Expect: 100-continue`, HTTP/1.1 only). Core sends the 100 when
    /// the body is first read, so an application that will refuse the
    /// request can answer without reading it, and the client need not send
    /// the body at all (RFC 9110 §10.1.1).
    pub fn expects_continue(&self) -> bool {
        self.head.expect_continue
    }

    /// The request's HTTP version.
    pub fn version(&self) -> Version {
        if self.head.minor_version == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }

    /// Whether the request offers a protocol upgrade that can be accepted
    /// (`Responder::upgrade` in the driver, `Server::handle_upgrade` in
    /// core): HTTP/1.1, an `upgrade` token in `Connection` and an `Upgrade`
    /// field — and no body still to stream, as bodies stream when
    /// `stream_request_bodies` is on. Otherwise the `Upgrade` field is
    /// to be ignored (RFC 9110 §7.8: always in HTTP/1.0) and the request
    /// answered as any other.
    pub fn wants_upgrade(&self) -> bool {
        self.head.upgrade
    }

    /// The header fields in the order received, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let raw = self.raw;
        self.fields
            .iter()
            .map(move |f| (text(f.name.get(raw)), f.value.get(raw)))
    }

    /// The value of the first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The value of the first field named `name` as text, for the common case
    /// of a value that is ASCII or UTF-8. `None` if there is no such field or
    /// its value is not UTF-8 (HTTP allows other bytes, opaque to it): read
    /// those with [`header`](Request::header).
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// The whole body, decoded if it was chunked.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Copies the request out of core's buffers, so that it can be answered
    /// later or on another thread. One allocation for the head and body and
    /// one for the field positions; the borrowed view costs none.
    pub fn into_owned(self) -> OwnedRequest {
        let head_len = self.head.len;
        let mut bytes = Vec::with_capacity(head_len + self.body.len());
        bytes.extend_from_slice(&self.raw[..head_len]);
        bytes.extend_from_slice(self.body);
        let bytes = Bytes::from(bytes);
        OwnedRequest {
            head_bytes: bytes.slice(..head_len),
            body: bytes.slice(head_len..),
            head: *self.head,
            fields: self.fields.to_vec(),
        }
    }
}

/// A request copied out of core's buffers by [`Request::into_owned`]: `Send`
/// and `'static`, so it can move to a worker thread while the connection's
/// buffers are reused. It keeps the head as received and reads through the
/// same code as [`Request`], so both give the same answers.
#[derive(Clone, Debug)]
pub struct OwnedRequest {
    /// The head as received, blank line included; the spans index it.
    head_bytes: Bytes,
    /// The body, decoded if it was chunked; shares an allocation with the head.
    body: Bytes,
    head: Head,
    fields: Vec<FieldSpan>,
}

impl OwnedRequest {
    /// The borrowed view of this request, for code written against
    /// [`Request`]; every accessor here reads through it.
    pub fn as_request(&self) -> Request<'_> {
        Request {
            raw: &self.head_bytes,
            head: &self.head,
            fields: &self.fields,
            body: &self.body,
        }
    }

    /// See [`Request::method`].
    pub fn method(&self) -> &str {
        self.as_request().method()
    }

    /// See [`Request::target`].
    pub fn target(&self) -> &str {
        self.as_request().target()
    }

    /// See [`Request::path`].
    pub fn path(&self) -> &str {
        self.as_request().path()
    }

    /// See [`Request::expects_continue`].
    pub fn expects_continue(&self) -> bool {
        self.as_request().expects_continue()
    }

    /// See [`Request::host`].
    pub fn host(&self) -> Option<&str> {
        self.as_request().host()
    }

    /// See [`Request::query`].
    pub fn query(&self) -> Option<&str> {
        self.as_request().query()
    }

    /// See [`Request::query_pairs`].
    pub fn query_pairs(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> + '_ {
        self.as_request().query_pairs()
    }

    /// See [`Request::query_param`].
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        self.as_request().query_param(name)
    }

    /// See [`Request::percent_decoded_path`].
    pub fn percent_decoded_path(&self) -> Cow<'_, str> {
        self.as_request().percent_decoded_path()
    }

    /// See [`Request::version`].
    pub fn version(&self) -> Version {
        self.as_request().version()
    }

    /// See [`Request::wants_upgrade`].
    pub fn wants_upgrade(&self) -> bool {
        self.as_request().wants_upgrade()
    }

    /// See [`Request::headers`].
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.as_request().headers()
    }

    /// See [`Request::header`].
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.as_request().header(name)
    }

    /// See [`Request::header_str`].
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.as_request().header_str(name)
    }

    /// The whole body, decoded if it was chunked; as `Bytes`, so it can be
    /// passed on without another copy.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// The root path, the commonest target of all: read back as this constant,
/// not through [`text`], it costs no UTF-8 check (some 36 instructions a
/// read, and the driver and most applications read target or path twice per
/// request).
const ROOT: &str = "/";

/// httparse only yields method, target and names that are ASCII tokens, so
/// this never loses anything; it avoids `unsafe` for a check that cannot fail.
fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_head, HeadScan};
    use crate::Config;

    /// Parses the head in `raw` and calls `f` with the request it makes with `body`.
    fn with_request<R>(raw: &[u8], body: &[u8], f: impl FnOnce(Request<'_>) -> R) -> R {
        let mut fields = Vec::new();
        let parsed = parse_head(
            raw,
            &mut HeadScan::default(),
            &Config::default(),
            &mut fields,
        );
        let head = parsed.expect("valid head").expect("complete head");
        f(Request {
            raw,
            head: &head,
            fields: &fields,
            body,
        })
    }

    fn get(target: &str) -> Vec<u8> {
        format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes()
    }

    #[test]
    fn the_host_is_the_absolute_target_s_authority_or_else_the_host_field() {
        let host =
            |head: &str| with_request(head.as_bytes(), b"", |req| req.host().map(str::to_owned));
        let some = |host: &str| Some(host.to_owned());
        assert_eq!(
            host("GET /a HTTP/1.1\r\nHost: h.example:8080\r\n\r\n"),
            some("h.example:8080")
        );
        assert_eq!(
            host("GET http://a.example:81/x?y HTTP/1.1\r\nHost: h\r\n\r\n"),
            some("a.example:81")
        );
        assert_eq!(
            host("GET http://[::1]?y HTTP/1.1\r\nHost: h\r\n\r\n"),
            some("[::1]")
        );
        assert_eq!(host("GET /http://x HTTP/1.1\r\nHost: h\r\n\r\n"), some("h"));
        assert_eq!(host("GET / HTTP/1.1\r\nHost:\r\n\r\n"), None);
        assert_eq!(host("GET / HTTP/1.0\r\n\r\n"), None);
        let owned = with_request(b"GET http://a/ HTTP/1.1\r\nHost: h\r\n\r\n", b"", |req| {
            req.into_owned()
        });
        assert_eq!(owned.host(), Some("a"));
    }

    #[test]
    fn standard_and_extension_methods_read_back_as_sent() {
        for method in ["GET", "PATCH", "OPTIONS", "PROPFIND", "get", "GETX"] {
            let raw = format!("{method} / HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes();
            with_request(&raw, b"", |req| assert_eq!(req.method(), method));
        }
    }

    #[test]
    fn absolute_form_reads_as_its_path_and_query() {
        with_request(&get("http://127.0.0.1:8080/a/b?x=1"), b"", |req| {
            assert_eq!(req.target(), "http://127.0.0.1:8080/a/b?x=1");
            assert_eq!((req.path(), req.query()), ("/a/b", Some("x=1")));
            assert_eq!(req.query_param("x").as_deref(), Some("1"));
        });
        with_request(&get("http://h"), b"", |req| {
            assert_eq!((req.path(), req.query()), ("/", None));
        });
    }

    #[test]
    fn query_pairs_are_form_decoded() {
        with_request(
            &get("/p?name=J%C3%BCrgen&q=a+b&flag&empty=&q=2"),
            b"",
            |req| {
                let pairs: Vec<(String, String)> = req
                    .query_pairs()
                    .map(|(n, v)| (n.into_owned(), v.into_owned()))
                    .collect();
                let expected = [
                    ("name", "Jürgen"),
                    ("q", "a b"),
                    ("flag", ""),
                    ("empty", ""),
                    ("q", "2"),
                ];
                assert_eq!(pairs, expected.map(|(n, v)| (n.to_owned(), v.to_owned())));
                assert_eq!(req.query_param("name").as_deref(), Some("Jürgen"));
                assert_eq!(
                    req.query_param("q").as_deref(),
                    Some("a b"),
                    "the first wins"
                );
                assert_eq!(req.query_param("missing"), None);
                assert!(matches!(req.query_param("empty"), Some(Cow::Borrowed(""))));
            },
        );
        with_request(&get("/p?a%20b=%FF"), b"", |req| {
            assert_eq!(req.query_param("a b").as_deref(), Some("\u{FFFD}"));
        });
    }

    #[test]
    fn no_query_has_no_pairs() {
        with_request(&get("/p"), b"", |req| {
            assert_eq!(req.query_pairs().count(), 0);
            assert_eq!(req.query_param(""), None);
        });
    }

    #[test]
    fn percent_decoded_path_decodes_escapes_but_not_plus() {
        with_request(&get("/J%C3%BCrgen/a+b?x=%41"), b"", |req| {
            assert_eq!(req.percent_decoded_path(), "/Jürgen/a+b");
        });
        with_request(&get("/bad%FF"), b"", |req| {
            assert_eq!(req.percent_decoded_path(), "/bad\u{FFFD}");
        });
        with_request(&get("/plain"), b"", |req| {
            assert!(matches!(
                req.percent_decoded_path(),
                Cow::Borrowed("/plain")
            ));
        });
    }

    #[test]
    fn header_str_is_the_value_when_it_is_text() {
        let head = b"GET / HTTP/1.1\r\nHost: h\r\nName: J\xc3\xbcrgen\r\nLatin1: J\xfcrgen\r\n\r\n";
        with_request(head, b"", |req| {
            assert_eq!(req.header_str("host"), Some("h"));
            assert_eq!(req.header_str("NAME"), Some("Jürgen"));
            assert_eq!(req.header_str("missing"), None);
            assert_eq!(req.header("latin1"), Some(&b"J\xfcrgen"[..]));
            assert_eq!(req.header_str("latin1"), None);
        });
    }

    #[test]
    fn owned_request_reads_like_the_borrowed_one_and_outlives_the_buffer() {
        let buffer = b"POST http://h/J%C3%BCrgen?q=a+b HTTP/1.1\r\nHost: h\r\nX-Name: v\r\n\
                       Content-Length: 4\r\n\r\nbody"
            .to_vec();
        let (head, body) = buffer.split_at(buffer.len() - 4);
        let owned = with_request(head, body, |req| {
            let owned = req.into_owned();
            assert_eq!(
                (owned.method(), owned.target(), owned.path(), owned.query()),
                (req.method(), req.target(), req.path(), req.query())
            );
            assert_eq!(owned.version(), req.version());
            assert!(owned.headers().eq(req.headers()));
            assert_eq!(owned.as_request().body(), req.body());
            owned
        });
        drop(buffer);
        let owned = std::thread::spawn(move || owned).join().unwrap();
        assert_eq!(owned.path(), "/J%C3%BCrgen");
        assert_eq!(owned.percent_decoded_path(), "/Jürgen");
        assert_eq!(owned.query_param("q").as_deref(), Some("a b"));
        let pairs: Vec<_> = owned.query_pairs().collect();
        assert_eq!(pairs, [(Cow::Borrowed("q"), Cow::Owned("a b".into()))]);
        assert_eq!(owned.header("x-name"), Some(&b"v"[..]));
        assert_eq!(owned.header_str("X-NAME"), Some("v"));
        assert_eq!(owned.body(), &Bytes::from_static(b"body"));
    }

    #[test]
    fn expects_continue_only_when_the_client_waits_for_100() {
        let head = |expect: &str| {
            format!("POST / HTTP/1.1\r\nHost: h\r\n{expect}Content-Length: 1\r\n\r\n")
        };
        for (expect, waits) in [("Expect: 100-continue\r\n", true), ("", false)] {
            with_request(head(expect).as_bytes(), b"", |req| {
                assert_eq!(req.expects_continue(), waits, "{expect:?}");
                assert_eq!(req.into_owned().expects_continue(), waits, "{expect:?}");
            });
        }
    }

    /// The index is the slot, small and reused; the number tells a
    /// reused slot's connections apart.
    #[test]
    fn a_connection_id_is_its_slot_and_its_generation() {
        let id = ConnId {
            index: 7,
            generation: 3,
        };
        assert_eq!(id.index(), 7);
        assert_eq!(id.as_u64(), 3 << 32 | 7);
        let reused = ConnId {
            index: 7,
            generation: 4,
        };
        assert_eq!(reused.index(), id.index());
        assert_ne!(reused.as_u64(), id.as_u64());
        let first = ConnId {
            index: 0,
            generation: 0,
        };
        assert_eq!((first.index(), first.as_u64()), (0, 0));
    }

    #[test]
    fn owned_request_is_send_and_static() {
        fn assert_send_static<T: Send + 'static>() {}
        assert_send_static::<OwnedRequest>();
    }
}
