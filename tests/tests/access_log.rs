//! End-to-end: the `ebb` binary's access log. One logfmt line per finished
//! request on stderr, marked `access`: keep-alive and closing requests, a
//! request core refuses, pipelined requests, and a request the drain
//! deadline cuts — each with the fields the README documents.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ebb_tests::{serial, Client, Ebb};

const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Long enough for a loaded machine to log a line; only ever waited out when
/// a test is about to fail.
const LOG_TIMEOUT: Duration = Duration::from_secs(20);

/// One access-log line, as key → value (quotes removed, escapes undone).
type Line = HashMap<String, String>;

/// The access-log lines in `log`, in order.
fn access_lines(log: &str) -> Vec<Line> {
    log.lines()
        .filter_map(|line| line.strip_prefix("access "))
        .map(parse_logfmt)
        .collect()
}

/// Parses `key=value key="quoted \"value\""` pairs.
fn parse_logfmt(text: &str) -> Line {
    let mut fields = Line::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once('=') {
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        fields.insert(key.trim().to_owned(), value);
        rest = after.trim_start();
    }
    fields
}

/// The lines from `peer`, once `count` of them have been logged.
fn lines_from(ebb: &Ebb, peer: SocketAddr, count: usize) -> Vec<Line> {
    let peer = peer.to_string();
    let deadline = std::time::Instant::now() + LOG_TIMEOUT;
    loop {
        let lines: Vec<Line> = access_lines(&ebb.log())
            .into_iter()
            .filter(|line| line["peer"] == peer)
            .collect();
        if lines.len() >= count || std::time::Instant::now() >= deadline {
            assert_eq!(lines.len(), count, "lines from {peer}:\n{}", ebb.log());
            return lines;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Checks the fields every line has, then the ones given.
fn check(line: &Line, expected: &[(&str, &str)]) {
    let ts = &line["ts"];
    // 2025-05-01T12:34:56.789Z
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "ts {ts:?}"
    );
    let dur_ms: f64 = line["dur_ms"].parse().expect("dur_ms is a number");
    assert!(dur_ms >= 0.0);
    assert_eq!(line["dur_ms"].split('.').nth(1).map(str::len), Some(3));
    line["bytes"].parse::<u64>().expect("bytes is a count");
    for (key, value) in expected {
        assert_eq!(
            line.get(*key).map(String::as_str),
            Some(*value),
            "{key} in {line:?}"
        );
    }
}

#[test]
fn access_log_names_every_request_with_its_outcome() {
    let _serial = serial();
    let ebb = Ebb::start(&["--workers", "1", "--drain-timeout", "1"]);

    // Two requests on one keep-alive connection.
    let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    assert_eq!(client.get("/").unwrap().status, 200);
    assert_eq!(client.get("/nope").unwrap().status, 404);
    let keep_alive = client.stream.local_addr().unwrap();
    let lines = lines_from(&ebb, keep_alive, 2);
    for (line, (target, status, bytes)) in lines
        .iter()
        .zip([("/", "200", "13"), ("/nope", "404", "10")])
    {
        check(
            line,
            &[
                ("method", "GET"),
                ("target", target),
                ("status", status),
                ("bytes", bytes),
                ("keep_alive", "true"),
                ("outcome", "complete"),
            ],
        );
        assert!(!line.contains_key("reason"));
    }

    // One that asks to close; its target needs quotes in logfmt.
    let mut stream = TcpStream::connect(ebb.addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
        .write_all(b"GET /healthz?probe=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    stream.read_to_end(&mut Vec::new()).unwrap();
    let closing = stream.local_addr().unwrap();
    check(
        &lines_from(&ebb, closing, 1)[0],
        &[
            ("method", "GET"),
            ("target", "/healthz?probe=1"),
            ("status", "200"),
            ("bytes", "3"),
            ("keep_alive", "false"),
            ("outcome", "complete"),
        ],
    );
    assert!(
        ebb.log().contains(" target=\"/healthz?probe=1\" "),
        "a value holding `=` is quoted"
    );

    // A malformed request: core refuses it before the application sees it.
    let mut stream = TcpStream::connect(ebb.addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let malformed = stream.local_addr().unwrap();
    let line = &lines_from(&ebb, malformed, 1)[0];
    check(
        line,
        &[
            ("method", "-"),
            ("target", "-"),
            ("status", "400"),
            ("keep_alive", "false"),
            ("outcome", "rejected"),
        ],
    );
    assert!(!line["reason"].is_empty());

    // A request still unanswered when the drain deadline passes. The one
    // worker reads it before it answers the request sent after it on the
    // keep-alive connection.
    let mut sleeper = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    sleeper.send_get("/sleep?ms=60000").unwrap();
    let sleeping = sleeper.stream.local_addr().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(client.get("/").unwrap().status, 200);
    ebb.signal(libc::SIGTERM);
    ebb.expect_exit_code(Duration::from_secs(30), 3);
    let line = &lines_from(&ebb, sleeping, 1)[0];
    check(
        line,
        &[
            ("method", "GET"),
            ("target", "/sleep?ms=60000"),
            ("status", "-"),
            ("bytes", "0"),
            ("keep_alive", "false"),
            ("outcome", "cut"),
            ("reason", "the drain deadline cut the connection"),
        ],
    );
    let dur_ms: f64 = line["dur_ms"].parse().unwrap();
    assert!(dur_ms >= 1000.0, "cut at the 1 s deadline: {dur_ms}");
    // Every request above, and nothing else.
    assert_eq!(access_lines(&ebb.log()).len(), 6, "{}", ebb.log());
}

#[test]
fn pipelined_requests_are_logged_in_order_with_their_own_names() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    client
        .stream
        .write_all(
            b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n\
              POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
              HEAD / HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
    assert_eq!(client.read_response().unwrap().status, 404);
    assert_eq!(client.read_response().unwrap().status, 200);
    let peer = client.stream.local_addr().unwrap();
    // HEAD's response has no body, which this client cannot frame; the log
    // says it was sent.
    let lines = lines_from(&ebb, peer, 3);
    let names: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l["method"].as_str(),
                l["target"].as_str(),
                l["status"].as_str(),
                l["bytes"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("GET", "/a", "404", "10"),
            ("POST", "/echo", "200", "5"),
            ("HEAD", "/", "200", "0")
        ]
    );
    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(30));
}

#[test]
fn no_access_log_flag_turns_it_off() {
    let _serial = serial();
    let ebb = Ebb::start(&["--no-access-log"]);
    let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    assert_eq!(client.get("/").unwrap().status, 200);
    drop(client);
    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(30));
    assert!(access_lines(&ebb.log()).is_empty(), "{}", ebb.log());
    assert!(ebb.log().contains("drain complete"), "{}", ebb.log());
}
