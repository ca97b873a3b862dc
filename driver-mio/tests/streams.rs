//! The streaming and upgrade API in-process: what a `BodyWriter` does when
//! it is finished, dropped, held back or misused, and an upgraded connection
//! carrying a WebSocket (tungstenite) end to end.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use ebb_mio::{BodyLength, Config, DrainReport, Request, Responder, Response, ShutdownHandle};
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A server on a free port with `handler`, its stream buffer set to
/// `stream_buffer_bytes`; stopped through the returned handle.
struct Server {
    addr: SocketAddr,
    shutdown: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<DrainReport>>>,
}

impl Server {
    fn start(
        stream_buffer_bytes: usize,
        handler: impl Fn(&Request<'_>, Responder) + Send + Sync + 'static,
    ) -> Server {
        let (builder, addr) = common::on_loopback(1);
        let builder = builder.config(Config {
            max_stream_buffer_bytes: stream_buffer_bytes,
            drain_timeout: Duration::from_secs(5),
            ..Config::default()
        });
        let shutdown = builder.shutdown_handle();
        let thread = thread::spawn(move || builder.serve(handler));
        Server {
            addr,
            shutdown,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> DrainReport {
        self.shutdown.shutdown();
        self.thread.take().unwrap().join().unwrap().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shutdown.shutdown();
            self.shutdown.shutdown();
            let _ = thread.join();
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Sends `GET path` with `Connection: close` and reads until the server
/// closes; what came.
fn get_to_close(addr: SocketAddr, path: &str) -> String {
    let mut stream = connect(addr);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = Vec::new();
    stream.read_to_end(&mut text).unwrap();
    String::from_utf8(text).unwrap()
}

/// Reads from `stream` until what came contains `end`.
fn read_until(stream: &mut TcpStream, end: &str) -> String {
    let mut text = Vec::new();
    let mut buf = [0; 4096];
    while !text.windows(end.len()).any(|w| w == end.as_bytes()) {
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before {end:?}: {}",
            String::from_utf8_lossy(&text)
        );
        text.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(text).unwrap()
}

#[test]
fn a_writer_dropped_unfinished_cuts_the_chunked_body_and_closes() {
    let server = Server::start(256 << 10, |_req, res| {
        let mut body = res.stream(Response::new(200), BodyLength::Unknown);
        thread::spawn(move || {
            body.write_all(b"partial").unwrap();
            body.flush().unwrap();
            // Dropped: the producer stopped before the end.
        });
    });
    let text = get_to_close(server.addr, "/");
    assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n7\r\npartial\r\n"),
        "no last chunk: {text:?}"
    );
}

#[test]
fn a_writer_dropped_short_of_its_length_sends_what_it_wrote_then_closes() {
    let server = Server::start(256 << 10, |_req, res| {
        let mut body = res.stream(Response::new(200), BodyLength::Known(10));
        thread::spawn(move || body.write_all(b"abc").unwrap());
    });
    // Without `Connection: close`: the server closes, after the bytes it
    // had, so the client sees a body short of its length.
    let mut stream = connect(server.addr);
    write!(stream, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut text = Vec::new();
    stream.read_to_end(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("Content-Length: 10\r\n"), "{text}");
    assert!(
        text.ends_with("\r\n\r\nabc"),
        "what it wrote, then the close: {text:?}"
    );
}

#[test]
fn a_known_length_written_in_full_ends_normally_even_unfinished() {
    let server = Server::start(256 << 10, |req, res| {
        if req.path() == "/next" {
            return res.respond(Response::text(200, "next"));
        }
        let mut body = res.stream(Response::new(200), BodyLength::Known(5));
        thread::spawn(move || body.write_all(b"hello").unwrap());
    });
    let mut stream = connect(server.addr);
    write!(stream, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let text = read_until(&mut stream, "hello");
    assert!(text.contains("Content-Length: 5\r\n"), "{text}");
    write!(stream, "GET /next HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_until(&mut stream, "next");
}

#[test]
fn finishing_short_of_the_declared_length_fails_and_closes() {
    let (tx, rx) = mpsc::channel();
    let server = Server::start(256 << 10, move |_req, res| {
        let mut body = res.stream(Response::new(200), BodyLength::Known(10));
        let tx = tx.clone();
        thread::spawn(move || {
            body.write_all(b"abc").unwrap();
            tx.send(body.finish().map_err(|e| e.kind())).unwrap();
        });
    });
    // Sent without `Connection: close`: the server closes it.
    let mut stream = connect(server.addr);
    write!(stream, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut text = Vec::new();
    stream.read_to_end(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    // Core closes at once, dropping what it had not written yet: the client
    // may see the head and part of the body, or nothing.
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    assert!(body.len() < 10, "short, then closed: {text:?}");
    assert_eq!(rx.recv().unwrap(), Err(ErrorKind::InvalidData));
}

#[test]
fn writing_past_the_declared_length_fails_and_the_response_stays_whole() {
    let (tx, rx) = mpsc::channel();
    let server = Server::start(256 << 10, move |_req, res| {
        let mut body = res.stream(Response::new(200), BodyLength::Known(3));
        let tx = tx.clone();
        thread::spawn(move || {
            let past = body.write_all(b"abcdef").map_err(|e| e.kind());
            let again = body.try_write(b"g").map_err(|e| e.kind());
            tx.send((past, again, body.finish().map_err(|e| e.kind())))
                .unwrap();
        });
    });
    let mut stream = connect(server.addr);
    write!(stream, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let text = read_until(&mut stream, "abc");
    assert!(text.contains("Content-Length: 3\r\n"), "{text}");
    let (past, again, finished) = rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(
        past,
        Err(ErrorKind::InvalidInput),
        "write_all past the length"
    );
    assert_eq!(
        again,
        Err(ErrorKind::InvalidInput),
        "and every write after it"
    );
    assert_eq!(finished, Ok(()), "the three bytes are the whole body");
    // The connection stays usable: the response was whole.
    write!(stream, "GET /next HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_until(&mut stream, "HTTP/1.1 200");
}

#[test]
fn try_write_takes_what_fits_and_notify_says_when_to_go_on() {
    const TOTAL: usize = 4 << 20;
    let (tx, rx) = mpsc::channel();
    let server = Server::start(16 << 10, move |_req, res| {
        let mut body = res.stream(Response::new(200), BodyLength::Known(TOTAL as u64));
        let tx = tx.clone();
        thread::spawn(move || {
            let data = vec![b'x'; TOTAL];
            let (mut sent, mut blocked) = (0, 0);
            while sent < TOTAL {
                match body.try_write(&data[sent..]) {
                    Ok(n) => {
                        assert!(n <= 16 << 10, "at most the stream buffer at once");
                        sent += n;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        blocked += 1;
                        let (wake, woken) = mpsc::channel();
                        body.notify_when_writable(move || wake.send(()).unwrap());
                        woken.recv_timeout(TIMEOUT).expect("notified");
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            body.finish().unwrap();
            tx.send(blocked).unwrap();
        });
    });
    let mut stream = connect(server.addr);
    write!(stream, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // Read nothing for a while: the producer is held back.
    thread::sleep(Duration::from_millis(200));
    let mut buf = vec![0; 64 << 10];
    let mut got = 0;
    let mut head = true;
    while got < TOTAL {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0);
        let mut piece = &buf[..n];
        if head {
            let end = piece.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            piece = &piece[end..];
            head = false;
        }
        assert!(piece.iter().all(|&b| b == b'x'));
        got += piece.len();
    }
    assert_eq!(got, TOTAL);
    let blocked = rx.recv_timeout(TIMEOUT).unwrap();
    println!("try_write would have blocked {blocked} times");
    assert!(blocked > 0, "the slow client held the producer back");
}

#[test]
fn a_blocking_write_on_the_worker_thread_fails_instead_of_hanging() {
    let (tx, rx) = mpsc::channel();
    let server = Server::start(1024, move |_req, res| {
        let mut body = res.stream(Response::new(200), BodyLength::Unknown);
        // More than the stream buffer, in the handler: it cannot all be taken
        // until the worker runs again, which waits for this call.
        let result = body.write_all(&[b'y'; 4096]).map_err(|e| e.kind());
        tx.send(result).unwrap();
        body.finish().unwrap_or_default();
    });
    let _ = get_to_close(server.addr, "/");
    assert_eq!(rx.recv().unwrap(), Err(ErrorKind::WouldBlock));
}

#[test]
fn upgrading_a_request_that_did_not_ask_answers_500_and_wait_fails() {
    let (tx, rx) = mpsc::channel();
    let server = Server::start(256 << 10, move |_req, res| {
        let pending = res.upgrade([("Upgrade", "echo")]);
        let tx = tx.clone();
        thread::spawn(move || tx.send(pending.wait().map(drop).map_err(|e| e.kind())));
    });
    let mut stream = connect(server.addr);
    write!(stream, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let text = read_until(&mut stream, "\r\n\r\n");
    assert!(text.starts_with("HTTP/1.1 500 "), "{text}");
    assert_eq!(rx.recv().unwrap(), Err(ErrorKind::InvalidInput));
}

/// A WebSocket echo on an upgraded connection: the handshake is answered
/// through `Responder::upgrade`, the frames are tungstenite's.
fn websocket_echo(req: &Request<'_>, res: Responder) {
    let Some(key) = req.header("sec-websocket-key") else {
        return res.respond(Response::text(400, "expected a WebSocket handshake\n"));
    };
    let pending = res.upgrade([
        ("Upgrade", "websocket".to_owned()),
        ("Sec-WebSocket-Accept", derive_accept_key(key)),
    ]);
    thread::spawn(move || {
        let Ok(upgraded) = pending.wait() else { return };
        let mut ws = WebSocket::from_raw_socket(upgraded, Role::Server, None);
        while let Ok(message) = ws.read() {
            if (message.is_text() || message.is_binary()) && ws.send(message).is_err() {
                break;
            }
        }
    });
}

#[test]
fn a_websocket_handshake_and_echo_run_over_an_upgraded_connection() {
    let server = Server::start(256 << 10, websocket_echo);
    let url = format!("ws://{}/ws", server.addr);
    let (mut ws, response) = tungstenite::connect(url).unwrap();
    assert_eq!(response.status(), 101);
    for text in ["hello", "over ebb"] {
        ws.send(Message::text(text)).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![0u8, 1, 2, 255]));
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    let report = server.stop();
    assert_eq!(report.forced, None, "{report}");
}

/// Pipelined requests are handed over together: the first is answered only
/// once the handler has seen the last (one at a time, it would wait in
/// vain), the others from threads in reverse order, one of them streamed;
/// their responses leave in request order.
#[test]
fn pipelined_requests_answered_out_of_order_from_threads_leave_in_order() {
    let (saw_last, seen) = mpsc::channel::<()>();
    let seen = std::sync::Mutex::new(Some(seen));
    let server = Server::start(256 << 10, move |req, res| {
        let n: u64 = req.path().trim_start_matches('/').parse().unwrap();
        let delay = Duration::from_millis(300 - 100 * n);
        if n == 2 {
            let _ = saw_last.send(());
        }
        if n == 0 {
            let seen = seen.lock().unwrap().take().unwrap();
            thread::spawn(move || {
                let with = match seen.recv_timeout(Duration::from_secs(10)) {
                    Ok(()) => "with-2",
                    Err(_) => "alone",
                };
                res.respond(Response::text(200, format!("whole-0-{with}")));
            });
        } else if n == 1 {
            let mut body = res.stream(Response::new(200), BodyLength::Unknown);
            thread::spawn(move || {
                thread::sleep(delay);
                body.write_all(b"streamed-1").unwrap();
                body.finish().unwrap();
            });
        } else {
            thread::spawn(move || {
                thread::sleep(delay);
                res.respond(Response::text(200, format!("whole-{n}")));
            });
        }
    });
    let mut stream = connect(server.addr);
    let batch: String = (0..3)
        .map(|n| {
            let close = if n == 2 { "Connection: close\r\n" } else { "" };
            format!("GET /{n} HTTP/1.1\r\nHost: t\r\n{close}\r\n")
        })
        .collect();
    stream.write_all(batch.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let zero = text
        .find("whole-0-with-2")
        .expect("/0 answered after /2 came");
    let one = text.find("streamed-1").expect("the streamed answer");
    let two = text.find("whole-2").expect("the last answer");
    assert!(zero < one && one < two, "{text}");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
    let report = server.stop();
    assert_eq!(report.requests_cut, 0);
}
