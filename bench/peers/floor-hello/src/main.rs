//! The floor of ebb's peer benchmark (bench/peers.sh): about the least a
//! server on mio can do per request, against which every server's CPU per
//! request is read. One thread, one poll, no parser: a request is whatever
//! ends with an empty line (wrk's GETs have no body), and each is answered
//! with the same canned `Hello, World!`: no `Date`, no validation, no
//! timers. It reads until `WouldBlock` and writes the answers to what it
//! read in one write. A request that says `close` (in wrk's requests only
//! `Connection: close` can) is answered with `Connection: close`, and its
//! connection half-closed, then closed at the client's FIN (RFC 9112 §9.6).
//!
//! Usage: `floor-hello ADDR WORKERS`. WORKERS must be 1: the floor is one
//! event loop, as ebb's `--workers 1` is.
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
/// The answer that closes: it says so, or the client would send again.
const CLOSING: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\
Connection: close\r\n\r\nHello, World!";
const LISTENER: Token = Token(usize::MAX);

/// One connection: bytes read and not yet a whole request, and answers not
/// yet written.
struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    close: bool,
    /// The close was asked for and its answer written: the write side is
    /// shut, and the connection waits for the client's FIN.
    shut: bool,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().expect("usage: floor-hello ADDR WORKERS");
    let workers = args
        .next()
        .map_or(1, |w| w.parse::<usize>().expect("WORKERS"));
    assert_eq!(workers, 1, "the floor runs one event loop");
    let mut listener = TcpListener::bind(addr.parse().expect("ADDR")).expect("bind");
    let mut poll = Poll::new().expect("poll");
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .expect("register");
    let mut events = Events::with_capacity(1024);
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next = 0;
    loop {
        poll.poll(&mut events, None).expect("poll");
        for event in &events {
            if event.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    let _ = stream.set_nodelay(true);
                    poll.registry()
                        .register(
                            &mut stream,
                            Token(next),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .expect("register");
                    let conn = Conn {
                        stream,
                        input: Vec::with_capacity(4096),
                        output: Vec::with_capacity(4096),
                        close: false,
                        shut: false,
                    };
                    conns.insert(next, conn);
                    next += 1;
                }
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(&key) else {
                continue;
            };
            if serve(conn).is_err() {
                let mut conn = conns.remove(&key).expect("present");
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

/// Reads what the connection has, answers every whole request in it, and
/// writes; an error (or the peer's FIN, or a close asked for and written)
/// ends the connection.
fn serve(conn: &mut Conn) -> Result<(), ()> {
    let mut buf = [0u8; 16384];
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => return Err(()),
            Ok(n) => conn.input.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Err(()),
        }
    }
    if conn.shut {
        // Whatever comes after the close is not answered.
        conn.input.clear();
        return Ok(());
    }
    let mut used = 0;
    while let Some(end) = find(&conn.input[used..], b"\r\n\r\n") {
        let head = &conn.input[used..used + end];
        conn.close |= find(head, b"close").is_some();
        conn.output
            .extend_from_slice(if conn.close { CLOSING } else { RESPONSE });
        used += end + 4;
        if conn.close {
            break;
        }
    }
    conn.input.drain(..used);
    while !conn.output.is_empty() {
        match conn.stream.write(&conn.output) {
            Ok(n) => {
                conn.output.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
    if conn.close && !conn.shut {
        conn.shut = true;
        conn.stream
            .shutdown(std::net::Shutdown::Write)
            .map_err(|_| ())?;
    }
    Ok(())
}

/// Where `needle` first starts in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
