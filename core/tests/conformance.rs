//! RFC 9112 request-line and Host rules, checked through the public API: one
//! request in, and either a request handed to the application or core's own
//! error response out.

use ebb_core::{Bytes, ConnId, Event, RequestId, Server, Time, Version};

/// One connection to a fresh server with the default config, driven in
/// memory: every event is carried out at once and all output is written.
struct Client {
    server: Server,
    conn: ConnId,
    written: Vec<u8>,
    requests: Vec<RequestId>,
    half_closed: bool,
    closed: bool,
}

impl Client {
    fn connect() -> Client {
        let mut server = Server::new(Default::default());
        let conn = server.handle_accept(Time::ZERO);
        let mut client = Client {
            server,
            conn,
            written: Vec::new(),
            requests: Vec::new(),
            half_closed: false,
            closed: false,
        };
        client.pump();
        client
    }

    /// A client that has sent `bytes`.
    fn sending(bytes: &[u8]) -> Client {
        let mut client = Client::connect();
        client.server.handle_recv(client.conn, bytes, Time::ZERO);
        client.pump();
        client
    }

    fn pump(&mut self) {
        while let Some(event) = self.server.poll_event() {
            match event {
                Event::Request(id) => self.requests.push(id),
                Event::Transmit(conn) => {
                    let [a, b] = self.server.transmit(conn);
                    let n = a.len() + b.len();
                    self.written.extend_from_slice(a);
                    self.written.extend_from_slice(b);
                    self.server.handle_sent(conn, n, Time::ZERO);
                }
                Event::HalfClose(conn, _) if conn == self.conn => self.half_closed = true,
                Event::Close(conn, _) if conn == self.conn => self.closed = true,
                _ => {}
            }
        }
    }

    /// Answers the oldest request with an empty 200.
    fn respond(&mut self) {
        let id = self.requests.remove(0);
        self.server
            .handle_response(id, 200, [("X", "y")], Bytes::new(), Time::ZERO)
            .expect("response accepted");
        self.pump();
    }

    /// The client closes its side too.
    fn peer_closes(&mut self) {
        self.server.handle_peer_eof(self.conn, Time::ZERO);
        self.pump();
    }

    /// The status of the first response written.
    fn status(&self) -> u16 {
        let text = String::from_utf8_lossy(&self.written);
        assert!(text.starts_with("HTTP/1.1 "), "no response: {text:?}");
        text[9..12].parse().unwrap()
    }

    /// Whether the output announces that the connection ends.
    fn says_close(&self) -> bool {
        String::from_utf8_lossy(&self.written).contains("\r\nConnection: close\r\n")
    }
}

#[test]
fn absolute_form_target_is_routed_by_its_path() {
    let mut client =
        Client::sending(b"GET http://127.0.0.1:8080/a/b?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let req = client.server.request(client.requests[0]).unwrap();
    assert_eq!(
        (req.target(), req.path(), req.query()),
        ("http://127.0.0.1:8080/a/b?x=1", "/a/b", Some("x=1"))
    );
    client.respond();
    assert_eq!(client.status(), 200);
    assert!(!client.closed);
}

#[test]
fn absolute_form_without_a_path_has_path_slash() {
    let client = Client::sending(b"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let req = client.server.request(client.requests[0]).unwrap();
    assert_eq!((req.path(), req.query()), ("/", None));
}

#[test]
fn invalid_host_is_400_and_closes_the_connection() {
    let mut client = Client::sending(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n");
    assert!(client.requests.is_empty());
    assert_eq!(client.status(), 400);
    assert!(client.says_close() && client.half_closed);
    client.peer_closes();
    assert!(client.closed);
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
        let client = Client::sending(request.as_bytes());
        assert_eq!(client.requests.len(), 1, "{host}");
    }
}

#[test]
fn malformed_request_line_is_400_not_505() {
    let client = Client::sending(b"GE T / HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(client.status(), 400);
    assert!(client.requests.is_empty());
}

#[test]
fn http_2_0_request_line_is_505() {
    let client = Client::sending(b"GET / HTTP/2.0\r\nHost: example.com\r\n\r\n");
    assert_eq!(client.status(), 505);
    assert!(client.says_close() && client.half_closed);
}

#[test]
fn later_http1_minor_version_is_served_as_http_1_1() {
    let mut client = Client::sending(b"GET /a HTTP/1.2\r\nHost: example.com\r\n\r\n");
    let req = client.server.request(client.requests[0]).unwrap();
    assert_eq!((req.path(), req.version()), ("/a", Version::Http11));
    client.respond();
    assert_eq!(client.status(), 200);
    assert!(!client.says_close() && !client.closed);
}
