//! RFC 9112 request-line and Host rules, checked through the public API: one
//! request in, and either a request handed to the application or core's own
//! error response out.

use ebb_core::{ConnId, Version};
use ebb_testkit::harness::Harness;

/// A fresh server with the default config, one connection on it, and the
/// client's `bytes` sent.
fn sending(bytes: &[u8]) -> (Harness, ConnId) {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, bytes);
    (h, c)
}

/// The status of the first response written, and whether it announced that
/// the connection ends.
fn first_response(h: &Harness, c: ConnId) -> (u16, bool) {
    let responses = h.responses(c);
    let first = responses.first().expect("a response");
    (first.status, first.close)
}

#[test]
fn absolute_form_target_is_routed_by_its_path() {
    let (mut h, c) =
        sending(b"GET http://127.0.0.1:8080/a/b?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let req = h.server.request(h.pending[0]).unwrap();
    assert_eq!(
        (req.target(), req.path(), req.query()),
        ("http://127.0.0.1:8080/a/b?x=1", "/a/b", Some("x=1"))
    );
    h.respond(c, 200, b"");
    assert_eq!(first_response(&h, c), (200, false));
    assert!(!h.closed(c));
}

#[test]
fn absolute_form_without_a_path_has_path_slash() {
    let (h, _) = sending(b"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let req = h.server.request(h.pending[0]).unwrap();
    assert_eq!((req.path(), req.query()), ("/", None));
}

#[test]
fn invalid_host_is_400_and_closes_the_connection() {
    let (mut h, c) = sending(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n");
    assert!(h.pending.is_empty());
    assert_eq!(first_response(&h, c), (400, true));
    assert!(h.half_closed(c));
    h.eof(c);
    assert!(h.closed(c));
}

#[test]
fn valid_hosts_are_accepted() {
    for host in [
        "example.com",
        "example.com:8080",
        "[::1]:80",
        "127.0.0.1",
        "xn--bcher-kva.example",
    ] {
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let (h, _) = sending(request.as_bytes());
        assert_eq!(h.pending.len(), 1, "{host}");
    }
}

#[test]
fn malformed_request_line_is_400_not_505() {
    let (h, c) = sending(b"GE T / HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(first_response(&h, c).0, 400);
    assert!(h.pending.is_empty());
}

#[test]
fn http_2_0_request_line_is_505() {
    let (h, c) = sending(b"GET / HTTP/2.0\r\nHost: example.com\r\n\r\n");
    assert_eq!(first_response(&h, c), (505, true));
    assert!(h.half_closed(c));
}

#[test]
fn later_http1_minor_version_is_served_as_http_1_1() {
    let (mut h, c) = sending(b"GET /a HTTP/1.2\r\nHost: example.com\r\n\r\n");
    let req = h.server.request(h.pending[0]).unwrap();
    assert_eq!((req.path(), req.version()), ("/a", Version::Http11));
    h.respond(c, 200, b"");
    assert_eq!(first_response(&h, c), (200, false));
    assert!(!h.closed(c));
}
