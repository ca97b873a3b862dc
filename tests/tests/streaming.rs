//! End-to-end: streamed responses and upgraded connections of the real `ebb`
//! binary — a long download, memory held to the stream buffers with slow
//! clients, streams in the drain (waited for, or cut at the deadline), and an
//! upgraded echo told to stop, or cut.
//!
//! Each test prints the figures it measured. Bounds are generous: the
//! machine is shared.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use ebb_tests::stream::{read_chunked, Fnv};
use ebb_tests::{serial, Client, Ebb};

const IO_TIMEOUT: Duration = Duration::from_secs(20);
const MIB: u64 = 1 << 20;

fn connect(ebb: &Ebb) -> TcpStream {
    let stream = TcpStream::connect(ebb.addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

fn get(stream: &mut TcpStream, target: &str) {
    write!(stream, "GET {target} HTTP/1.1\r\nHost: ebb\r\n\r\n").unwrap();
}

#[test]
fn a_1_gib_stream_arrives_whole_and_in_order() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let bytes = 1024 * MIB;
    let mut stream = connect(&ebb);
    let started = Instant::now();
    get(&mut stream, &format!("/stream?bytes={bytes}"));
    let body = read_chunked(&stream, None, |_| {}).unwrap();
    let took = started.elapsed();
    assert!(body.head.starts_with("HTTP/1.1 200 OK"), "{}", body.head);
    assert!(body.complete, "the last chunk came");
    assert_eq!(body.bytes, bytes);
    assert!(body.is_pattern, "every byte is the pattern's at its offset");
    assert_eq!(body.checksum, Fnv::of_pattern(bytes));
    println!(
        "1 GiB streamed in {:.2} s ({:.2} GB/s, debug build), FNV-1a {:016x}; peak RSS {} KiB",
        took.as_secs_f64(),
        bytes as f64 / took.as_secs_f64() / 1e9,
        body.checksum.0,
        ebb.peak_rss_kib()
    );
    // The connection serves on.
    get(&mut stream, "/");
    let mut answer = Vec::new();
    let mut buf = [0; 1024];
    while !answer.ends_with(b"Hello, World!") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed after the stream: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn eight_slow_downloads_of_64_mib_keep_the_server_under_32_mib() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let bytes = 64 * MIB;
    let rate = 8 * MIB; // per client
    let baseline = ebb.peak_rss_kib();
    let started = Instant::now();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let mut stream = connect(&ebb);
            get(&mut stream, &format!("/stream?bytes={bytes}"));
            thread::spawn(move || read_chunked(&stream, Some(rate), |_| {}).unwrap())
        })
        .collect();
    for client in clients {
        let body = client.join().unwrap();
        assert!(body.complete && body.is_pattern);
        assert_eq!(body.bytes, bytes);
    }
    let peak = ebb.peak_rss_kib();
    println!(
        "8 clients × 64 MiB at ~8 MiB/s each in {:.1} s: server peak RSS {peak} KiB ({baseline} KiB before)",
        started.elapsed().as_secs_f64()
    );
    assert!(peak < 32 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn sigterm_waits_for_a_stream_then_exits_at_once() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let mut stream = connect(&ebb);
    let started = Instant::now();
    get(&mut stream, "/sse?events=100&interval_ms=100");
    let reader = thread::spawn(move || {
        let body = read_chunked(&stream, None, |_| {}).unwrap();
        // The drain closes the connection once the stream is done; the
        // client closes its side when it sees that.
        let mut rest = Vec::new();
        let _ = (&stream).read_to_end(&mut rest);
        (body, rest)
    });
    thread::sleep(Duration::from_secs(1));
    ebb.signal(libc::SIGTERM);
    let (body, rest) = reader.join().unwrap();
    let exited = ebb.expect_clean_exit(Duration::from_secs(30));
    assert!(body.complete, "the stream completed: {body:?}");
    assert!(body.head.contains("text/event-stream"), "{}", body.head);
    assert!(rest.is_empty());
    let last = body.last_byte_at;
    println!(
        "SSE of 100 events: SIGTERM at 1 s, last byte at {:.2} s, exit {:.0} ms after the last byte",
        (last - started).as_secs_f64(),
        (exited.saturating_duration_since(last)).as_secs_f64() * 1000.0
    );
    assert!(last - started >= Duration::from_secs(9), "all 100 events");
    assert!(
        exited.saturating_duration_since(last) < Duration::from_secs(3),
        "exit follows the stream's end"
    );
    let log = ebb.log();
    assert!(
        log.contains("drain complete") && log.contains("cut 0"),
        "{log}"
    );
}

#[test]
fn the_drain_deadline_cuts_a_stream_without_its_last_chunk() {
    let _serial = serial();
    let ebb = Ebb::start(&["--drain-timeout", "1"]);
    let mut stream = connect(&ebb);
    get(&mut stream, "/sse?events=100&interval_ms=100");
    let reader = thread::spawn(move || {
        let body = read_chunked(&stream, None, |_| {}).unwrap();
        (body, Instant::now())
    });
    thread::sleep(Duration::from_millis(500));
    ebb.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let (body, cut_at) = reader.join().unwrap();
    let cut_after = cut_at - signalled;
    let exited = ebb.expect_exit_code(Duration::from_secs(10), 3);
    println!(
        "SSE cut: {} bytes, end of file {:.0} ms after SIGTERM, exit {:.0} ms after SIGTERM",
        body.bytes,
        cut_after.as_secs_f64() * 1000.0,
        (exited - signalled).as_secs_f64() * 1000.0
    );
    assert!(
        !body.complete,
        "no terminating chunk: the client sees the cut"
    );
    assert!(body.bytes > 0);
    assert!(
        cut_after >= Duration::from_millis(900) && cut_after < Duration::from_secs(5),
        "cut at the 1 s deadline"
    );
    let log = ebb.log();
    assert!(
        log.contains("forced by deadline") && log.contains("cut 1,"),
        "{log}"
    );
}

/// Sends the upgrade request with `early` right behind its head, in one
/// write; returns the connection after the 101's head.
fn upgrade(ebb: &Ebb, target: &str, early: &[u8]) -> TcpStream {
    let mut stream = connect(ebb);
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nHost: ebb\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(early);
    stream.write_all(&request).unwrap();
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: echo\r\n") && lower.contains("connection: upgrade\r\n"));
    stream
}

fn echoed(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn an_upgraded_echo_gets_early_bytes_and_closes_on_the_stop_notice() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let mut stream = upgrade(&ebb, "/upgrade", b"sent with the head;");
    assert_eq!(echoed(&mut stream, 19), b"sent with the head;");
    stream.write_all(b"and after").unwrap();
    assert_eq!(echoed(&mut stream, 9), b"and after");

    ebb.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    let closed = signalled.elapsed();
    let exited = ebb.expect_clean_exit(Duration::from_secs(10));
    println!(
        "upgraded echo closed {:.1} ms after SIGTERM, exit {:.1} ms after SIGTERM",
        closed.as_secs_f64() * 1000.0,
        (exited - signalled).as_secs_f64() * 1000.0
    );
    assert!(rest.is_empty());
    let log = ebb.log();
    assert!(
        log.contains("drain complete") && log.contains("upgraded 1 (cut 0)"),
        "{log}"
    );
}

#[test]
fn a_quiet_upgraded_echo_closes_after_the_keep_alive_timeout() {
    let _serial = serial();
    let ebb = Ebb::start(&["--keep-alive-timeout", "1"]);
    let mut stream = upgrade(&ebb, "/upgrade", b"");
    stream.write_all(b"ping").unwrap();
    assert_eq!(echoed(&mut stream, 4), b"ping");
    let quiet = Instant::now();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    let closed = quiet.elapsed();
    println!(
        "quiet upgraded echo closed after {:.0} ms",
        closed.as_secs_f64() * 1000.0
    );
    assert!(rest.is_empty());
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_secs(8),
        "{closed:?}"
    );
    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(10));
}

#[test]
fn the_drain_deadline_cuts_an_upgraded_connection_that_ignores_the_notice() {
    let _serial = serial();
    let ebb = Ebb::start(&["--drain-timeout", "1"]);
    let mut stream = upgrade(&ebb, "/upgrade?ignore_stop=1", b"");
    stream.write_all(b"ping").unwrap();
    assert_eq!(echoed(&mut stream, 4), b"ping");
    ebb.signal(libc::SIGTERM);
    let signalled = Instant::now();
    thread::sleep(Duration::from_millis(300));
    stream.write_all(b"still echoing").unwrap();
    assert_eq!(echoed(&mut stream, 13), b"still echoing");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest); // EOF (or a reset) at the deadline
    let cut = signalled.elapsed();
    let exited = ebb.expect_exit_code(Duration::from_secs(10), 3);
    println!(
        "ignored stop notice: upgraded connection cut {:.0} ms after SIGTERM, exit {:.0} ms after",
        cut.as_secs_f64() * 1000.0,
        (exited - signalled).as_secs_f64() * 1000.0
    );
    assert!(cut >= Duration::from_millis(900) && cut < Duration::from_secs(5));
    let log = ebb.log();
    assert!(log.contains("upgraded 1 (cut 1)"), "{log}");
}

#[test]
fn upgrade_without_the_echo_protocol_is_426() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    let response = client.get("/upgrade").unwrap();
    assert_eq!(response.status, 426);
    assert_eq!(
        client.get("/").unwrap().status,
        200,
        "the connection serves on"
    );
}
