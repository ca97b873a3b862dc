//! End-to-end: streamed request bodies of the real `ebb` binary — a long
//! upload to `/upload` counted and checksummed in bounded memory, and
//! `/echo` still answering whole bodies (413 over `--max-body`).
//!
//! Each test prints the figures it measured. Bounds are generous: the
//! machine is shared.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ebb_tests::stream::{Fnv, PATTERN};
use ebb_tests::{serial, Ebb};

const IO_TIMEOUT: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;
/// The long upload's size.
const UPLOAD_BYTES: u64 = 1024 * MIB;
/// Peak RSS the server may reach while taking the upload.
const RSS_BOUND_KIB: u64 = 32 * 1024;

fn connect(ebb: &Ebb) -> TcpStream {
    let stream = TcpStream::connect(ebb.addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Reads one response with a `Content-Length` body; its head and body.
fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("a Content-Length");
            while got.len() < end + 4 + length {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "closed mid-body: {got:?}");
                got.extend_from_slice(&buf[..n]);
            }
            let body = String::from_utf8_lossy(&got[end + 4..end + 4 + length]).into_owned();
            return (head, body);
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a response: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Sends `bytes` of the pattern as a chunked body, in chunks of 256 KiB.
fn send_chunked_pattern(stream: &mut TcpStream, bytes: u64) {
    const CHUNK: usize = 256 * 1024;
    let data: Vec<u8> = PATTERN.iter().copied().cycle().take(CHUNK).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        write!(stream, "{n:x}\r\n").unwrap();
        stream.write_all(&data[..n]).unwrap();
        stream.write_all(b"\r\n").unwrap();
        left -= n as u64;
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
}

#[test]
fn a_1_gib_chunked_upload_is_counted_and_checksummed_in_bounded_memory() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let bytes = UPLOAD_BYTES;
    let mut stream = connect(&ebb);
    let started = Instant::now();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: ebb\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    send_chunked_pattern(&mut stream, bytes);
    let (head, body) = read_response(&mut stream);
    let took = started.elapsed();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let expected = format!("bytes={bytes} fnv1a={:016x}\n", Fnv::of_pattern(bytes).0);
    assert_eq!(body, expected);
    let peak = ebb.peak_rss_kib();
    println!(
        "{} MiB uploaded (chunked) in {:.2} s ({:.2} GB/s, debug build); peak RSS {peak} KiB",
        bytes / MIB,
        took.as_secs_f64(),
        bytes as f64 / took.as_secs_f64() / 1e9,
    );
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB");
    // Read to its end: the connection serves on.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: ebb\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(body, "Hello, World!");
}

#[test]
fn an_upload_with_content_length_is_counted_and_checksummed() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let bytes = 64 * MIB + 17;
    let mut stream = connect(&ebb);
    write!(
        stream,
        "POST /upload HTTP/1.1\r\nHost: ebb\r\nContent-Length: {bytes}\r\n\r\n"
    )
    .unwrap();
    let data: Vec<u8> = PATTERN.iter().copied().cycle().take(1 << 20).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(data.len() as u64) as usize;
        stream.write_all(&data[..n]).unwrap();
        left -= n as u64;
    }
    let (head, body) = read_response(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let expected = format!("bytes={bytes} fnv1a={:016x}\n", Fnv::of_pattern(bytes).0);
    assert_eq!(body, expected);
    let peak = ebb.peak_rss_kib();
    println!("{bytes} bytes uploaded (Content-Length); peak RSS {peak} KiB");
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB");
}

#[test]
fn echo_answers_the_whole_body_and_413_over_max_body() {
    let _serial = serial();
    let ebb = Ebb::start(&["--max-body", "1000"]);
    let mut stream = connect(&ebb);
    let body = "x".repeat(1000);
    write!(
        stream,
        "POST /echo HTTP/1.1\r\nHost: ebb\r\nContent-Length: 1000\r\n\r\n{body}"
    )
    .unwrap();
    let (head, echoed) = read_response(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(echoed, body);
    write!(
        stream,
        "POST /echo HTTP/1.1\r\nHost: ebb\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    send_chunked_pattern(&mut stream, 1001);
    let (head, _) = read_response(&mut stream);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
}
