//! A client that stops reading a large response is closed at the
//! write-stall timeout, and the close frees what was queued for it: a plain
//! close would leave the unsent bytes in the kernel, on an orphaned socket
//! in FIN-WAIT-1, for as long as the client keeps answering window probes.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ebb_mio::{Bytes, Config, Observation, Response};

/// The sockets of local port `port` in state FIN-WAIT-1, from the kernel's
/// table (`/proc/net/tcp`: the local address is `IP:PORT` in hex, the state
/// `04`).
fn fin_wait_1(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1].rsplit(':').next().unwrap();
            u16::from_str_radix(local_port, 16) == Ok(port) && fields[3] == "04"
        })
        .count()
}

#[test]
fn a_client_that_stops_reading_is_reset_and_its_unsent_bytes_freed() {
    let (builder, addr) = common::on_loopback(1);
    let config = Config {
        write_stall_timeout: Duration::from_secs(1),
        ..Config::default()
    };
    let (ended, requests_ended) = mpsc::channel();
    let builder = builder.config(config).observe(move |o| {
        if let Observation::Request(end) = o {
            let _ = ended.send(end.outcome.label());
        }
    });
    let shutdown = builder.shutdown_handle();
    // 64 MiB: more than the two sockets' buffers hold, so the write stalls.
    let body = Bytes::from(vec![b'x'; 64 << 20]);
    let server = std::thread::spawn(move || {
        builder.serve(move |_req, res| res.respond(Response::new(200).body(body.clone())))
    });

    let mut client = TcpStream::connect(addr).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let outcome = requests_ended
        .recv_timeout(Duration::from_secs(20))
        .expect("the request ends at the write-stall timeout");
    assert_eq!(outcome, "stalled");
    // The client still holds its socket, unread: nothing of the server's
    // side may be left waiting on it.
    let since = Instant::now();
    while fin_wait_1(addr.port()) > 0 {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "an orphaned socket still holds the unsent response"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(client);
    shutdown.shutdown();
    server.join().unwrap().unwrap();
}
