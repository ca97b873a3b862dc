//! The engine serving: requests in, responses out, keep-alive, limits,
//! timeouts and clean closes — driven through an in-memory harness.

use std::time::Duration;

use ebb_core::{BodyLength, Bytes, CloseReason, Config, Event, RespondError};
use ebb_testkit::harness::{get, Harness};

#[test]
fn serves_a_get_and_keeps_the_connection() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/hello?x=1"));
    let id = h.pending[0];
    let req = h.server.request(id).unwrap();
    assert_eq!(
        (req.method(), req.target(), req.path(), req.query()),
        ("GET", "/hello?x=1", "/hello", Some("x=1"))
    );
    assert_eq!(req.header("host"), Some(&b"example.com"[..]));
    h.respond(c, 200, b"hi");
    let out = h.output(c);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{out}");
    assert!(
        out.contains("Content-Length: 2\r\n") && out.ends_with("\r\n\r\nhi"),
        "{out}"
    );
    assert!(!out.contains("Connection:"), "{out}");
    assert!(!h.closed(c));
    assert_eq!(h.server.active_requests(), 0);
    h.send(c, &get("/again"));
    h.respond(c, 200, b"ok");
    assert_eq!(h.responses(c).len(), 2);
}

#[test]
fn pipelined_requests_are_dispatched_one_at_a_time_when_so_configured() {
    let mut h = Harness::with(Config {
        max_pipelined_requests: 1,
        ..Config::default()
    });
    let c = h.accept();
    let mut batch = Vec::new();
    for i in 0..3 {
        batch.extend_from_slice(&get(&format!("/{i}")));
    }
    h.send(c, &batch);
    for i in 0..3 {
        assert_eq!(h.pending.len(), 1, "one request at a time");
        assert_eq!(
            h.server.request(h.pending[0]).unwrap().target(),
            format!("/{i}")
        );
        h.respond(c, 200, b"x");
    }
    assert_eq!(h.responses(c).len(), 3);
}

#[test]
fn empty_lines_before_a_request_are_ignored() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, b"\r\n\r\n\n");
    h.send(c, &get("/"));
    assert_eq!(h.pending.len(), 1);
    assert_eq!(h.server.request(h.pending[0]).unwrap().path(), "/");
}

#[test]
fn a_client_sending_only_empty_lines_gets_408_at_the_header_timeout() {
    let mut h = Harness::new();
    let c = h.accept();
    for _ in 0..4 {
        h.send(c, b"\r\n");
        h.advance_ms(1_000);
        assert!(h.responses(c).is_empty());
    }
    assert_eq!(h.server.active_requests(), 1, "empty lines begin a request");
    h.advance_ms(1_000);
    let responses = h.responses(c);
    assert_eq!(responses[0].status, 408, "5 s after the first empty line");
}

/// Empty lines count toward the head: more than `max_head_bytes` of them,
/// however they arrive, are a head too large, not a core kept reading until
/// the header timeout. Fewer are dropped, and the request after them served.
#[test]
fn more_empty_lines_than_a_head_may_hold_are_431() {
    let max = Config::default().max_head_bytes;
    for piece in [max + 2, 4096, 2] {
        let mut h = Harness::new();
        let c = h.accept();
        let mut sent = 0;
        while h.responses(c).is_empty() && sent <= max + 2 {
            h.send(c, &b"\r\n".repeat(piece / 2));
            sent += piece;
        }
        let responses = h.responses(c);
        assert_eq!(
            (responses[0].status, responses[0].close),
            (431, true),
            "pieces of {piece}"
        );
        assert!(sent > max, "not before the limit ({sent} bytes sent)");
    }
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &[&b"\r\n".repeat(max / 2)[..], &get("/")].concat());
    assert_eq!(h.pending.len(), 1);
}

#[test]
fn a_body_trickled_below_the_minimum_rate_gets_408_after_the_grace() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
    );
    // One byte a second: each is progress, so the body timeout never fires.
    let mut seconds = 0;
    while h.responses(c).is_empty() {
        h.advance_ms(1_000);
        h.send(c, b"x");
        seconds += 1;
        assert!(seconds < 30, "no 408 within 30 s");
    }
    assert_eq!(h.responses(c)[0].status, 408);
    assert_eq!(seconds, 11, "the first byte past the 10 s grace");
    assert!(h.pending.is_empty(), "never handed to the application");
}

#[test]
fn a_body_at_the_minimum_rate_is_received_whole() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12000\r\n\r\n",
    );
    for _ in 0..20 {
        h.advance_ms(1_000);
        h.send(c, &[b'x'; 600]);
    }
    assert_eq!(h.pending.len(), 1);
}

#[test]
fn a_silent_new_connection_is_closed_at_the_new_connection_timeout() {
    let mut h = Harness::with(Config {
        keep_alive_timeout: Duration::ZERO,
        ..Config::default()
    });
    let c = h.accept();
    h.advance_ms(9_999);
    assert!(
        !h.closed(c),
        "keep_alive_timeout 0 does not bound the first request"
    );
    h.advance_ms(1);
    assert_eq!(
        h.close_reason(c),
        Some(ebb_core::CloseReason::NewConnectionTimeout)
    );
}

#[test]
fn keep_alive_timeout_zero_closes_after_each_response() {
    let mut h = Harness::with(Config {
        keep_alive_timeout: Duration::ZERO,
        ..Config::default()
    });
    let c = h.accept();
    h.advance_ms(100);
    h.send(c, &get("/"));
    h.respond(c, 200, b"ok");
    assert!(h.output(c).contains("Connection: close"));
    assert_eq!(
        h.half_close_reason(c),
        Some(ebb_core::CloseReason::KeepAliveOff)
    );
}

#[test]
fn http10_closes_unless_keep_alive_and_then_says_so() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, b"GET / HTTP/1.0\r\n\r\n");
    h.respond(c, 200, b"x");
    assert!(h.output(c).contains("Connection: close\r\n"));
    assert!(
        h.closed(c),
        "client did not ask to keep it: plain close, no linger"
    );

    let c = h.accept();
    h.send(c, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    h.respond(c, 200, b"x");
    assert!(h.output(c).contains("Connection: keep-alive\r\n"));
    assert!(!h.closed(c));
}

#[test]
fn connection_close_from_the_client_is_honoured() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    h.respond(c, 200, b"x");
    assert!(h.output(c).contains("Connection: close\r\n"));
    assert!(h.closed(c));
}

#[test]
fn head_gets_the_length_without_the_body() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    h.respond(c, 200, b"hello");
    let out = h.output(c);
    assert!(
        out.contains("Content-Length: 5\r\n") && out.ends_with("\r\n\r\n"),
        "{out}"
    );
}

#[test]
fn no_content_length_for_204_and_304() {
    for status in [204, 304] {
        let mut h = Harness::new();
        let c = h.accept();
        h.send(c, &get("/"));
        h.respond(c, status, b"ignored");
        let out = h.output(c);
        assert!(
            !out.contains("Content-Length") && out.ends_with("\r\n\r\n"),
            "{out}"
        );
    }
}

#[test]
fn upgrade_requests_are_answered_as_plain_http11() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(
        c,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    h.respond(c, 200, b"no");
    assert!(h.output(c).starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn a_response_naming_upgrade_also_names_it_in_connection() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/ws"));
    let id = h.pending.remove(0);
    h.server
        .handle_response(
            id,
            426,
            [("Upgrade", "echo"), ("Connection", "dropped")],
            Bytes::from_static(b"use echo"),
            h.now,
        )
        .unwrap();
    h.pump();
    let out = h.output(c);
    assert!(out.starts_with("HTTP/1.1 426 "), "{out}");
    assert!(out.contains("\r\nUpgrade: echo\r\n"), "{out}");
    assert_eq!(
        out.matches("\r\nConnection: upgrade\r\n").count(),
        1,
        "{out}"
    );
    assert!(!out.contains("dropped"), "core owns Connection: {out}");
    // A response without one is as before, whatever its names.
    h.send(c, &get("/"));
    let id = h.pending.remove(0);
    h.server
        .handle_response(
            id,
            200,
            [("X-Seven", "7")],
            Bytes::from_static(b"ok"),
            h.now,
        )
        .unwrap();
    h.pump();
    assert_eq!(
        h.output(c).matches("Connection:").count(),
        1,
        "{}",
        h.output(c)
    );
}

#[test]
fn content_length_body_arrives_whole() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(
        c,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello",
    );
    assert!(h.pending.is_empty());
    h.send(c, b" world");
    assert_eq!(
        h.server.request(h.pending[0]).unwrap().body(),
        b"hello world"
    );
}

#[test]
fn chunked_body_arrives_decoded() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    );
    h.send(c, b"lo\r\n6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n");
    assert_eq!(
        h.server.request(h.pending[0]).unwrap().body(),
        b"hello world"
    );
    h.respond(c, 200, b"");
    h.send(c, &get("/next"));
    assert_eq!(h.server.request(h.pending[0]).unwrap().target(), "/next");
}

/// An extension that breaks RFC 9112 §7.1.1's grammar is a 400 and a
/// close, as any malformed chunk line, and no request reaches the
/// application: a front end that read the line otherwise could frame the
/// body otherwise.
#[test]
fn a_chunk_extension_out_of_grammar_is_400() {
    for line in [&b"5;@@@ ==="[..], b"5;a=\"unterminated", b"5;a \t"] {
        let mut h = Harness::new();
        let c = h.accept();
        let mut request =
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        request.extend_from_slice(line);
        request.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        h.send(c, &request);
        let responses = h.responses(c);
        let shown = String::from_utf8_lossy(line);
        assert_eq!(
            (responses[0].status, responses[0].close),
            (400, true),
            "{shown}"
        );
        assert!(h.pending.is_empty(), "{shown}");
    }
}

#[test]
fn expect_continue_is_sent_only_when_the_body_will_be_read() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    );
    assert_eq!(h.output(c), "HTTP/1.1 100 Continue\r\n\r\n");
    h.send(c, b"abc");
    h.respond(c, 200, b"ok");
    assert_eq!(h.responses(c).len(), 2);

    // Over the limit: 413 at once, never 100.
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n",
    );
    let out = h.output(c);
    assert!(
        out.starts_with("HTTP/1.1 413 ") && !out.contains("100 Continue"),
        "{out}"
    );

    // Body already here: no 100 needed.
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(h.output(c), "");
}

#[test]
fn errors_answer_with_status_and_close_through_linger() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, b"GET / HTTP/1.1\r\n\r\n"); // no Host
    let responses = h.responses(c);
    assert_eq!((responses[0].status, responses[0].close), (400, true));
    assert!(
        h.half_closed(c) && !h.closed(c),
        "lingers rather than resetting"
    );
    h.send(c, b"more bytes the client was sending");
    assert!(h.pending.is_empty(), "nothing after an error is dispatched");
    h.eof(c);
    assert!(h.closed(c));
    assert_eq!(h.server.active_requests(), 0);
}

#[test]
fn header_read_timeout_is_absolute_so_slowloris_gets_408() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, b"GET / HTTP/1.1\r\n");
    for _ in 0..9 {
        h.advance_ms(500);
        h.send(c, b"X: y\r\n");
    }
    assert!(h.output(c).is_empty(), "4.5 s: still within the 5 s budget");
    h.advance_ms(500);
    assert_eq!(h.responses(c)[0].status, 408);
}

#[test]
fn body_read_timeout_counts_from_the_last_progress() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n",
    );
    h.advance_ms(9_000);
    h.send(c, b"12345");
    h.advance_ms(9_000);
    assert!(h.output(c).is_empty());
    h.advance_ms(1_000);
    assert_eq!(h.responses(c)[0].status, 408);
}

#[test]
fn keep_alive_timeout_closes_the_idle_connection_cleanly() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/"));
    h.respond(c, 200, b"x");
    h.advance(Duration::from_secs(59));
    assert!(!h.half_closed(c));
    h.advance(Duration::from_secs(1));
    assert!(h.half_closed(c) && !h.closed(c));
    h.advance(Duration::from_secs(2));
    assert!(h.closed(c), "linger timeout");
}

#[test]
fn a_write_stall_closes_the_connection_and_releases_the_count() {
    let mut h = Harness::new();
    h.auto_write = false;
    let c = h.accept();
    h.send(c, &get("/"));
    h.respond(c, 200, b"x");
    h.write(c, 10);
    h.advance(Duration::from_secs(29));
    h.write(c, 10);
    h.advance(Duration::from_secs(29));
    assert!(!h.closed(c), "progress resets the stall deadline");
    h.advance(Duration::from_secs(1));
    assert!(h.closed(c));
    assert_eq!(h.server.active_requests(), 0);
}

/// A harness whose client reads nothing and whose writes stall after 5 s,
/// and a connection.
fn stalls_in_five_seconds() -> (Harness, ebb_core::ConnId) {
    let mut h = Harness::with(Config {
        write_stall_timeout: Duration::from_secs(5),
        ..Config::default()
    });
    h.auto_write = false;
    let c = h.accept();
    (h, c)
}

/// Queuing is not progress: a response queued behind one the client is
/// not reading does not put off the stall, which counts from when the
/// connection began to wait on its output.
#[test]
fn a_response_queued_behind_a_stalled_one_does_not_restart_the_stall() {
    let (mut h, c) = stalls_in_five_seconds();
    h.send(c, &[get("/1"), get("/2")].concat());
    h.respond(c, 200, b"first");
    h.advance(Duration::from_secs(4));
    h.respond(c, 200, b"second");
    assert!(!h.closed(c));
    h.advance(Duration::from_secs(1));
    assert_eq!(h.close_reason(c), Some(CloseReason::WriteStall));
}

/// Nor is a rejection queued behind it (here of bytes that are no request).
#[test]
fn a_rejection_queued_behind_a_stalled_response_does_not_restart_the_stall() {
    let (mut h, c) = stalls_in_five_seconds();
    h.send(c, &get("/1"));
    h.respond(c, 200, b"first");
    h.advance(Duration::from_secs(4));
    h.send(c, b"\x16\x03\x01 not HTTP\r\n\r\n");
    assert!(!h.closed(c));
    h.advance(Duration::from_secs(1));
    assert_eq!(h.close_reason(c), Some(CloseReason::WriteStall));
}

/// Nor is an answer given before its turn (whole, or a stream's head),
/// queued when its turn comes behind a response the client is not reading.
#[test]
fn an_answer_parked_until_its_turn_does_not_restart_the_stall() {
    for streamed in [false, true] {
        let (mut h, c) = stalls_in_five_seconds();
        h.send(c, &[get("/1"), get("/2"), get("/3")].concat());
        let [first, second, third] = <[_; 3]>::try_from(std::mem::take(&mut h.pending))
            .expect("all three handed over at once");
        h.server
            .handle_response(first, 200, [("A", "b")], Bytes::from_static(b"1"), h.now)
            .unwrap();
        if streamed {
            h.server
                .handle_stream_start(third, 200, [("A", "b")], BodyLength::Unknown, h.now)
                .unwrap();
        } else {
            h.server
                .handle_response(third, 200, [("A", "b")], Bytes::from_static(b"3"), h.now)
                .unwrap();
        }
        h.pump();
        h.advance(Duration::from_secs(4));
        // The second's answer is queued, and the third's turn comes.
        h.server
            .handle_response(second, 200, [("A", "b")], Bytes::from_static(b"2"), h.now)
            .unwrap();
        h.pump();
        assert!(!h.closed(c), "streamed: {streamed}");
        h.advance(Duration::from_secs(1));
        assert_eq!(
            h.close_reason(c),
            Some(CloseReason::WriteStall),
            "streamed: {streamed}"
        );
    }
}

#[test]
fn large_bodies_are_handed_over_without_copying_into_the_head_buffer() {
    let mut h = Harness::new();
    h.auto_write = false;
    let c = h.accept();
    h.send(c, &get("/"));
    let body = Bytes::from(vec![b'z'; 100_000]);
    let id = h.pending.remove(0);
    h.server
        .handle_response(id, 200, std::iter::empty::<(&str, &str)>(), body, h.now)
        .unwrap();
    let [head, tail] = h.server.transmit(c);
    assert!(head.ends_with(b"\r\n\r\n") && tail.len() == 100_000);
    let total = head.len() + tail.len();
    h.write(c, total - 1);
    assert_eq!(
        h.server.active_requests(),
        1,
        "active until the last byte is handed over"
    );
    h.write(c, 1);
    assert_eq!(h.server.active_requests(), 0);
}

#[test]
fn pipelined_input_is_bounded_and_reading_resumes() {
    let config = Config {
        max_pipelined_bytes: 100,
        ..Config::default()
    };
    let mut h = Harness::with(config);
    let c = h.accept();
    let mut batch = Vec::new();
    for _ in 0..10 {
        batch.extend_from_slice(&get("/"));
    }
    h.send(c, &batch);
    assert!(
        !h.server.wants_read(c),
        "too much buffered behind the request being answered"
    );
    for _ in 0..10 {
        h.respond(c, 200, b"");
    }
    assert!(h.log.contains(&Event::ResumeRead(c)));
    assert!(h.server.wants_read(c));
}

#[test]
fn responses_a_client_leaves_unread_are_held_to_the_pipelining_room() {
    let config = Config {
        max_pipelined_bytes: 1000,
        ..Config::default()
    };
    let mut h = Harness::with(config);
    h.auto_write = false;
    let c = h.accept();
    let batch: Vec<u8> = (0..20).flat_map(|_| get("/")).collect();
    h.send(c, &batch);
    // The client reads nothing: each answer lets core take the next request
    // only while what waits to be written fits the room. (Answers to
    // requests handed ahead wait for their turn, parked, not queued.)
    static BODY: [u8; 300] = [b'x'; 300];
    let queued = |h: &Harness| h.server.transmit(c).iter().map(|s| s.len()).sum::<usize>();
    h.respond(c, 200, &BODY);
    let one = queued(&h);
    let mut answered = 1;
    while !h.pending.is_empty() {
        h.respond(c, 200, &BODY);
        answered += 1;
    }
    let queued = queued(&h);
    assert!(answered < 20, "the rest wait for the client to read");
    assert!(
        queued <= 1000 + one,
        "{queued} bytes of {answered} responses queued: more than the room and one response"
    );
    assert!(
        !h.server.wants_read(c),
        "nor is more read while they wait to be written"
    );
    // Written, the answers parked take their turns as room frees, and then
    // the next request is taken.
    for _ in 0..20 {
        h.write(c, usize::MAX);
        if !h.pending.is_empty() {
            break;
        }
    }
    assert!(!h.pending.is_empty(), "written, the next request is taken");
}

#[test]
fn a_request_being_answered_leaves_room_to_read_what_follows_it() {
    let mut h = Harness::with(Config {
        max_pipelined_bytes: 100,
        ..Config::default()
    });
    let c = h.accept();
    h.send(c, &get("/"));
    assert_eq!(h.pending.len(), 1);
    assert!(h.server.wants_read(c), "little is buffered: read on");
}

#[test]
fn a_request_is_readable_only_while_it_waits_for_its_response() {
    let mut h = Harness::new();
    let c = h.accept();
    let mut two = get("/a");
    two.extend_from_slice(&get("/b"));
    h.send(c, &two);
    let first = h.pending[0];
    assert_eq!(h.server.request(first).unwrap().path(), "/a");
    h.respond(c, 200, b"a");
    let second = h.pending[0];
    assert_eq!(h.server.request(second).unwrap().path(), "/b");
    assert!(
        h.server.request(first).is_none(),
        "an answered request's id names nothing, not the one after it"
    );
}

#[test]
fn a_body_begun_while_a_response_is_still_written_is_read_at_once() {
    let config = Config {
        max_pipelined_bytes: 100,
        ..Config::default()
    };
    let mut h = Harness::with(config);
    h.auto_write = false;
    let c = h.accept();
    let mut batch = get("/");
    batch.extend_from_slice(
        b"POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nabc",
    );
    h.send(c, &batch);
    assert!(
        !h.server.wants_read(c),
        "the upload waits behind the GET being answered"
    );
    // A response longer than the pipelined bound holds the upload back until
    // most of it is written.
    static LONG: [u8; 300] = [b'x'; 300];
    h.respond(c, 200, &LONG);
    let [a, b] = h.server.transmit(c);
    let queued = a.len() + b.len();
    h.write(c, queued - 60);
    assert!(h.pending.is_empty(), "the upload's body is not all here");
    // Its body timer now runs: core must read what the client sent.
    assert!(
        h.log.contains(&Event::ResumeRead(c)),
        "reading resumes when the upload begins, the GET's response still being written"
    );
    assert!(h.server.wants_read(c));
}

#[test]
fn an_invalid_status_is_refused_and_answered_with_500_in_its_place() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/"));
    let id = h.pending.remove(0);
    let none = std::iter::empty::<(&str, &str)>();
    h.pump();
    assert_eq!(
        h.server.handle_response(id, 101, none, Bytes::new(), h.now),
        Err(RespondError::InvalidStatus)
    );
    h.pump();
    let responses = h.responses(c);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 500);
    assert!(!h.closed(c), "an application fault keeps the connection");
    let again = std::iter::empty::<(&str, &str)>();
    assert_eq!(
        h.server
            .handle_response(id, 200, again, Bytes::new(), h.now),
        Err(RespondError::UnknownRequest)
    );
}

#[test]
fn an_invalid_header_is_refused_and_answered_with_500_in_its_place() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/"));
    let id = h.pending.remove(0);
    let bad = [("X", "a\nb")];
    assert_eq!(
        h.server.handle_response(id, 200, bad, Bytes::new(), h.now),
        Err(RespondError::InvalidHeader)
    );
    h.pump();
    assert_eq!(h.responses(c)[0].status, 500);
    assert!(
        !h.output(c).contains("a\nb"),
        "nothing of the bad header is written"
    );
    h.send(c, &get("/next"));
    assert_eq!(h.pending.len(), 1, "the connection serves on");
}

#[test]
fn a_request_the_application_drops_is_answered_with_500() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/"));
    let id = h.pending.remove(0);
    h.server.handle_app_failure(id, h.now);
    h.pump();
    assert_eq!(h.responses(c)[0].status, 500);
    assert_eq!(h.server.active_requests(), 0);
    // A late failure for an answered request is ignored.
    h.server.handle_app_failure(id, h.now);
    h.pump();
    assert_eq!(h.responses(c).len(), 1);
}

#[test]
fn abort_mid_body_releases_the_count() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12",
    );
    assert_eq!(h.server.active_requests(), 1);
    h.abort(c);
    assert_eq!(h.server.active_requests(), 0);
    assert!(h.closed(c));
}

#[test]
fn peer_eof_after_a_full_request_still_gets_the_answer() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/"));
    h.eof(c);
    h.respond(c, 200, b"x");
    assert!(h.output(c).contains("Connection: close\r\n"));
    assert!(h.closed(c));
}

#[test]
fn stale_ids_are_ignored() {
    let mut h = Harness::new();
    let c = h.accept();
    h.abort(c);
    let d = h.accept();
    assert_eq!(c.index(), d.index(), "slot reused");
    assert_ne!(c, d);
    h.send(c, &get("/"));
    assert!(h.pending.is_empty());
    assert!(!h.server.wants_read(c));
}

#[test]
fn time_never_runs_backwards() {
    let mut h = Harness::new();
    let c = h.accept();
    h.now = ebb_core::Time::from_millis(10_000);
    h.send(c, b"GET / HTTP/1.1\r\n");
    let deadline = h.server.poll_timeout().unwrap();
    h.server.handle_timeout(ebb_core::Time::ZERO);
    h.pump();
    assert_eq!(h.server.poll_timeout(), Some(deadline));
    assert_eq!(deadline, ebb_core::Time::from_millis(15_000));
}

#[test]
fn buffers_reused_from_an_aborted_connection_carry_nothing_over() {
    let mut h = Harness::new();
    let a = h.accept();
    h.send(
        a,
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf a bo",
    );
    h.abort(a);
    let b = h.accept();
    h.send(b, &get("/b"));
    let req = h
        .server
        .request(h.pending[0])
        .expect("a clean request on fresh buffers");
    assert_eq!((req.target(), req.body()), ("/b", &b""[..]));
}

#[test]
fn lingering_discards_a_bounded_amount_then_closes() {
    let mut h = Harness::with(Config {
        max_linger_bytes: 1_000,
        ..Config::default()
    });
    let c = h.accept();
    h.send(c, b"GET / HTTP/1.1\r\n\r\n"); // no Host: 400, then linger
    assert!(h.half_closed(c));
    h.terminate(); // so the report counts the close
    h.send(c, &[b'x'; 1_000]);
    assert!(!h.closed(c), "up to the bound is read and discarded");
    h.send(c, b"x");
    assert!(h.closed(c), "past it, the connection is closed anyway");
    h.backlog_empty();
    assert_eq!(h.exit.clone().unwrap().reset_risk_closes, 1);
}

#[test]
fn a_close_request_with_bytes_behind_it_still_closes_after_lingering() {
    let mut h = Harness::new();
    let c = h.accept();
    let mut bytes = b"GET /1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec();
    bytes.extend(get("/2"));
    h.send(c, &bytes);
    h.respond(c, 200, b"x");
    assert!(h.output(c).contains("Connection: close\r\n"));
    assert!(
        h.half_closed(c) && !h.closed(c),
        "input is left unread: linger, not close"
    );
    assert!(h.pending.is_empty(), "/2 is never handed over");
}

#[test]
fn http10_keep_alive_and_close_together_mean_close() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(
        c,
        b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
    );
    h.respond(c, 200, b"x");
    assert!(h.output(c).contains("Connection: close\r\n"));
    assert!(h.closed(c));
}

#[test]
fn the_date_header_carries_what_the_driver_set() {
    let config = Config {
        keep_alive_timeout: Duration::from_secs(7),
        ..Config::default()
    };
    let mut h = Harness::with(config.clone());
    h.server.set_date("Sun, 06 Nov 1994 08:49:37 GMT");
    let c = h.accept();
    h.send(c, &get("/"));
    h.respond(c, 200, b"x");
    assert!(h
        .output(c)
        .contains("\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"));
    assert_eq!(h.server.config(), &config);
}

#[test]
fn fd_pressure_closes_the_longest_idle_keep_alive_connections_cleanly() {
    let mut h = Harness::new();
    let conns: Vec<_> = (0..40).map(|_| h.accept()).collect();
    for &c in &conns {
        h.advance_ms(10);
        h.send(c, &get("/"));
        h.respond(c, 200, b"ok");
    }
    let busy = h.accept();
    h.send(busy, b"GET / HTTP/1.1\r\n");
    let closed = h.server.handle_fd_pressure(h.now);
    h.pump();
    assert_eq!(closed, 32, "at most 32 at once");
    for (i, &c) in conns.iter().enumerate() {
        let reason = h.half_close_reason(c);
        if i < 32 {
            assert_eq!(
                reason,
                Some(ebb_core::CloseReason::FdPressure),
                "oldest first"
            );
        } else {
            assert_eq!(reason, None);
        }
    }
    assert!(
        !h.half_closed(busy),
        "a request in progress is never closed for room"
    );
}

/// A request that reached the socket as the keep-alive timeout fell due,
/// but that the driver had not read yet, is not lost to the close: core
/// asks what waits unread before it closes an idle connection.
#[test]
fn a_request_unread_when_the_keep_alive_timeout_falls_due_is_answered() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/1"));
    h.respond(c, 200, b"x");
    let unread = get("/2");
    h.unread.insert(c, unread.len());
    h.advance_ms(60_000);
    assert!(h.log.contains(&Event::CountUnread(c)), "core asks first");
    assert!(!h.half_closed(c), "its request waits in the socket");
    assert_eq!(h.server.poll_timeout(), None, "and no timer runs");
    h.unread.remove(&c);
    h.send(c, &unread);
    h.respond(c, 200, b"y");
    let responses = h.responses(c);
    assert_eq!(responses.len(), 2);
    assert!(!responses[1].close);
    h.advance_ms(60_000);
    assert_eq!(h.half_close_reason(c), Some(CloseReason::KeepAliveTimeout));
}
