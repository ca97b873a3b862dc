//! The embedding API in-process: a closure handler answering at once, later
//! from another thread, by panicking and by dropping its responder; then a
//! drain started through the `ShutdownHandle`, with ebb's signal handling off.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ebb_mio::{Builder, Bytes, Config, OwnedRequest, Request, Responder, Response};

fn app(req: &Request<'_>, res: Responder) {
    match req.path() {
        "/" => res.respond(Response::new(200).body(Bytes::from_static(b"static"))),
        "/later" => {
            // Copied out of the worker's buffers, to read on another thread.
            let req: OwnedRequest = req.into_owned();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                res.respond(Response::text(201, format!("later {}", req.target())));
            });
        }
        "/stopping" => {
            let stopping = res.is_stopping().to_string();
            res.respond(Response::text(200, stopping));
        }
        "/peer" => {
            let peer = res.peer_addr().to_string();
            res.respond(Response::text(200, peer));
        }
        "/panic" => panic!("the handler panics"),
        "/drop" => drop(res),
        _ => res.respond(Response::new(404)),
    }
}

/// One request on its own connection; the status line and body.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    get_on(TcpStream::connect(addr).unwrap(), path)
}

/// [`get`] on a connection made already.
fn get_on(mut stream: TcpStream, path: &str) -> (String, String) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[test]
fn handler_answers_now_later_and_after_failures_then_drains_on_request() {
    let (builder, addr) = common::on_loopback(2);
    let builder = builder.drain_timeout(Duration::from_secs(5));
    let shutdown = builder.shutdown_handle();
    let server = std::thread::spawn(move || builder.serve(app));

    assert_eq!(
        get(addr, "/"),
        ("HTTP/1.1 200 OK".to_owned(), "static".to_owned())
    );
    assert_eq!(
        get(addr, "/later?q=1"),
        (
            "HTTP/1.1 201 Created".to_owned(),
            "later /later?q=1".to_owned()
        )
    );
    assert_eq!(get(addr, "/panic").0, "HTTP/1.1 500 Internal Server Error");
    assert_eq!(get(addr, "/drop").0, "HTTP/1.1 500 Internal Server Error");
    assert_eq!(get(addr, "/stopping").1, "false");
    let client = TcpStream::connect(addr).unwrap();
    let client_addr = client.local_addr().unwrap().to_string();
    assert_eq!(get_on(client, "/peer").1, client_addr);
    assert_eq!(
        get(addr, "/").0,
        "HTTP/1.1 200 OK",
        "still serving after a panic"
    );

    assert_eq!(
        first_caught_signal(),
        None,
        "with signals(false) ebb installs no signal handling"
    );

    shutdown.shutdown();
    let report = server.join().unwrap().unwrap();
    assert_eq!(report.forced, None, "{report}");
    assert_eq!(report.requests_cut, 0, "{report}");
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
}

/// The first of the signals ebb can handle that this process catches, if any
/// (from `SigCgt` in `/proc/self/status`).
fn first_caught_signal() -> Option<i32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caught = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .unwrap();
    [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ]
    .into_iter()
    .find(|&signal| caught & (1 << (signal - 1)) != 0)
}

#[test]
fn a_config_that_would_refuse_every_request_is_refused_before_serving() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = ebb_mio::Config {
        max_head_bytes: 0,
        ..ebb_mio::Config::default()
    };
    let e = Builder::new()
        .listener(listener)
        .signals(false)
        .config(config)
        .serve(app)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().starts_with("max_head_bytes is 0: "), "{e}");
}

#[test]
fn a_backlog_below_one_is_refused_when_binding() {
    for backlog in [0, -7] {
        let e = Builder::new()
            .bind("127.0.0.1:0".parse().unwrap())
            .backlog(backlog)
            .signals(false)
            .serve(app)
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(
            e.to_string()
                .starts_with(&format!("backlog is {backlog}: ")),
            "{e}"
        );
    }
}

#[test]
fn the_backlog_of_a_listener_bound_elsewhere_is_not_checked() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let builder = Builder::new().listener(listener).backlog(0).signals(false);
    let stop = builder.shutdown_handle();
    let server = std::thread::spawn(move || builder.serve(app));
    stop.shutdown();
    assert!(server.join().unwrap().is_ok());
}

#[test]
fn an_address_that_cannot_be_bound_is_named_in_the_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Builder::new()
        .bind(addr)
        .workers(1)
        .signals(false)
        .serve(app)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

/// A stop while a client's pipelined requests wait in the socket, unread
/// behind one the application holds (core paused reading once the answers
/// queued behind it filled its room): they were sent before the stop, so
/// every one is answered, and the last closes the connection.
#[test]
fn pipelined_requests_still_in_the_socket_at_the_stop_are_all_answered() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // Room in the accepted socket for all the client sends, whatever the
    // machine's default buffer: a request still in the client's kernel was
    // not sent, and is not owed.
    socket2::SockRef::from(&listener)
        .set_recv_buffer_size(256 * 1024)
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let builder = Builder::new()
        .listener(listener)
        .workers(1)
        .signals(false)
        .drain_timeout(Duration::from_secs(20))
        .config(Config {
            max_pipelined_bytes: 4096,
            ..Config::default()
        });
    let shutdown = builder.shutdown_handle();
    let server = std::thread::spawn(move || {
        builder.serve(move |req: &Request<'_>, res: Responder| {
            if req.path() == "/held" {
                held_tx.send(()).unwrap();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(500));
                    res.respond(Response::text(200, "held"));
                });
            } else {
                // Answers that pile up behind /held's until reading pauses.
                res.respond(Response::text(200, "x".repeat(2000)));
            }
        })
    });
    // Some 100 KB behind /held, whose answers come to 800 KB: more than
    // core reads ahead (it pauses with some 70 KB read, its room here being
    // 4 KiB), and little enough for the socket to take the rest at once.
    const PIPELINED: usize = 400;
    let pad = "p".repeat(200);
    let mut batch = b"GET /held HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    for i in 0..PIPELINED {
        batch.extend(format!("GET /{i} HTTP/1.1\r\nHost: t\r\nX-Pad: {pad}\r\n\r\n").bytes());
    }
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let writing = std::thread::spawn(move || writer.write_all(&batch).unwrap());
    held_rx.recv().unwrap();
    writing.join().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    shutdown.shutdown();
    let mut text = Vec::new();
    stream.read_to_end(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), PIPELINED + 1);
    assert_eq!(text.matches("Connection: close\r\n").count(), 1);
    drop(stream);
    let report = server.join().unwrap().unwrap();
    assert_eq!(report.requests_cut, 0, "{report}");
}
