//! Streamed responses (framing, back-pressure, lengths, the drain) and
//! protocol upgrades, one rule per test.

use std::time::Duration;

use ebb_core::{BodyLength, CloseReason, Config, Event, Outcome, RespondError, StreamError};
use ebb_testkit::harness::{get, Harness};

const NONE: [(&str, &str); 0] = [];

fn start(h: &mut Harness, length: BodyLength) -> ebb_core::RequestId {
    let id = h.pending.remove(0);
    h.server
        .handle_stream_start(id, 200, [("Content-Type", "text/plain")], length, h.now)
        .expect("a valid head");
    h.pump();
    id
}

fn data(h: &mut Harness, id: ebb_core::RequestId, bytes: &[u8]) -> Result<usize, StreamError> {
    let taken = h.server.handle_stream_data(id, bytes, h.now);
    h.pump();
    taken
}

fn end(h: &mut Harness, id: ebb_core::RequestId) -> Result<(), StreamError> {
    let ended = h.server.handle_stream_end(id, NONE, h.now);
    h.pump();
    ended
}

#[test]
fn an_unknown_length_streams_chunked_to_http_1_1_and_keeps_the_connection() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/stream"));
    let id = start(&mut h, BodyLength::Unknown);
    assert_eq!(data(&mut h, id, b"hello "), Ok(6));
    assert_eq!(data(&mut h, id, b"world"), Ok(5));
    end(&mut h, id).unwrap();
    let out = h.output(c);
    assert!(out.contains("Transfer-Encoding: chunked\r\n"), "{out}");
    assert!(!out.contains("Content-Length"), "{out}");
    assert!(
        out.ends_with("\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"),
        "{out}"
    );
    let responses = h.responses(c);
    assert_eq!(responses[0].body, b"hello world");
    assert!(!responses[0].close);
    h.send(c, &get("/next"));
    assert_eq!(h.pending.len(), 1, "the connection serves on");
}

#[test]
fn a_client_that_asked_to_close_is_lingered_on_if_reading_paused_during_its_stream() {
    // The request alone fills the pipelining room, so reading pauses while
    // it is answered: what the client sent after it may wait unread in the
    // kernel (RFC 9112 §9.6 forbids it, but clients do), and closing at once
    // after the last chunk would reset the client, destroying what it had
    // not yet read of its response.
    let config = Config {
        max_pipelined_bytes: 100,
        ..Config::default()
    };
    let mut h = Harness::with(config);
    let c = h.accept();
    let padding = "x".repeat(100);
    let request =
        format!("GET / HTTP/1.1\r\nHost: h\r\nX-Pad: {padding}\r\nConnection: close\r\n\r\n");
    h.send(c, request.as_bytes());
    assert!(!h.server.wants_read(c), "the request fills the room");
    // The client reads nothing until the stream has ended.
    h.auto_write = false;
    let id = start(&mut h, BodyLength::Unknown);
    assert_eq!(data(&mut h, id, b"bye"), Ok(3));
    end(&mut h, id).unwrap();
    h.write(c, usize::MAX);
    assert_eq!(h.responses(c).len(), 1);
    assert!(
        !h.closed(c),
        "closed while the driver may hold unread input"
    );
    assert_eq!(h.half_close_reason(c), Some(CloseReason::ClientAsked));
    assert!(h.log.contains(&Event::ResumeRead(c)), "lingering reads on");
}

#[test]
fn the_answer_to_a_pipelined_request_waits_for_the_stream_before_it_to_end() {
    let mut h = Harness::new();
    let c = h.accept();
    let mut two = get("/a");
    two.extend_from_slice(&get("/b"));
    h.send(c, &two);
    let id = start(&mut h, BodyLength::Unknown);
    assert_eq!(h.pending.len(), 1, "/b was handed ahead of its turn");
    h.respond(c, 200, b"b");
    data(&mut h, id, b"x").unwrap();
    assert_eq!(
        h.responses(c).len(),
        0,
        "/b's answer waits while /a streams"
    );
    end(&mut h, id).unwrap();
    let responses = h.responses(c);
    assert_eq!(
        (responses[0].body.as_slice(), responses[1].body.as_slice()),
        (&b"x"[..], &b"b"[..])
    );
}

#[test]
fn an_unknown_length_to_http_1_0_is_ended_by_the_close_never_chunked() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let id = start(&mut h, BodyLength::Unknown);
    data(&mut h, id, b"raw bytes").unwrap();
    end(&mut h, id).unwrap();
    let out = h.output(c);
    assert!(
        !out.contains("chunked") && out.contains("Connection: close\r\n"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\nraw bytes"), "{out}");
    assert_eq!(h.half_close_reason(c), Some(CloseReason::CloseDelimited));
}

#[test]
fn a_declared_length_is_sent_as_content_length_and_kept_exactly() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/"));
    let id = start(&mut h, BodyLength::Known(10));
    data(&mut h, id, b"01234").unwrap();
    data(&mut h, id, b"56789").unwrap();
    end(&mut h, id).unwrap();
    let out = h.output(c);
    assert!(out.contains("Content-Length: 10\r\n") && out.ends_with("\r\n\r\n0123456789"));
    assert!(!h.closed(c));
}

#[test]
fn too_many_bytes_for_the_declared_length_close_the_connection() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/"));
    let id = start(&mut h, BodyLength::Known(4));
    assert_eq!(data(&mut h, id, b"12345"), Err(StreamError::LengthMismatch));
    assert_eq!(
        h.half_close_reason(c),
        Some(CloseReason::StreamMismatch),
        "closed cleanly once written: a client still sending is not reset"
    );
    assert_eq!(data(&mut h, id, b"1"), Err(StreamError::UnknownStream));
    let finished = h.log.iter().find_map(|e| match e {
        Event::Finished(f) => Some(f.outcome),
        _ => None,
    });
    assert_eq!(
        finished,
        Some(Outcome::Unfinished(CloseReason::StreamMismatch))
    );
}

#[test]
fn ending_short_of_the_declared_length_closes_the_connection() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/"));
    let id = start(&mut h, BodyLength::Known(4));
    data(&mut h, id, b"12").unwrap();
    assert_eq!(end(&mut h, id), Err(StreamError::LengthMismatch));
    assert_eq!(h.half_close_reason(c), Some(CloseReason::StreamMismatch));
    assert!(
        h.output(c).contains("Content-Length: 4\r\n") && h.output(c).ends_with("\r\n\r\n12"),
        "cut short of its length, and nothing after: {}",
        h.output(c)
    );
}

#[test]
fn a_broken_stream_still_lets_the_responses_before_it_be_written() {
    let mut h = Harness::new();
    let c = h.accept();
    let mut two = get("/a");
    two.extend_from_slice(&get("/b"));
    h.auto_write = false;
    h.send(c, &two);
    h.respond(c, 200, b"first");
    let id = start(&mut h, BodyLength::Known(4));
    assert_eq!(data(&mut h, id, b"12345"), Err(StreamError::LengthMismatch));
    assert!(
        !h.closed(c) && !h.half_closed(c),
        "the first response is still queued"
    );
    h.write(c, usize::MAX);
    let responses = h.responses(c);
    assert_eq!(responses[0].body, b"first", "{}", h.output(c));
    assert_eq!(h.half_close_reason(c), Some(CloseReason::StreamMismatch));
    let outcomes: Vec<_> = h
        .log
        .iter()
        .filter_map(|e| match e {
            Event::Finished(f) => Some(f.outcome),
            _ => None,
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Complete,
            Outcome::Unfinished(CloseReason::StreamMismatch)
        ]
    );
    assert_eq!(h.server.active_requests(), 0);
}

/// Neither sends a body; a HEAD announces the length it would have had,
/// and a 204 none (RFC 9110 §8.6: never a `Content-Length` in a 204).
#[test]
fn head_and_204_send_no_body_however_much_is_streamed() {
    let requests = [
        &b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"[..],
    ];
    for (request, length) in requests
        .into_iter()
        .flat_map(|r| [(r, BodyLength::Unknown), (r, BodyLength::Known(17))])
    {
        let mut h = Harness::new();
        let c = h.accept();
        h.send(c, request);
        let id = h.pending.remove(0);
        let head = request.starts_with(b"HEAD");
        let status = if head { 200 } else { 204 };
        h.server
            .handle_stream_start(id, status, NONE, length, h.now)
            .unwrap();
        h.pump();
        data(&mut h, id, b"never on the wire").unwrap();
        end(&mut h, id).unwrap();
        let out = h.output(c);
        assert!(out.ends_with("\r\n\r\n") && !out.contains("never"), "{out}");
        assert!(!out.contains("\r\n0\r\n"), "no last chunk either: {out}");
        let announced = head && length == BodyLength::Known(17);
        assert_eq!(out.contains("Content-Length: 17\r\n"), announced, "{out}");
        assert_eq!(out.contains("Content-Length"), announced, "{out}");
        let counted = h.log.iter().find_map(|e| match e {
            Event::Finished(f) => Some(f.body_bytes),
            _ => None,
        });
        assert_eq!(counted, Some(0), "nor a body byte in its Finished");
    }
}

#[test]
fn trailers_follow_a_chunked_body() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/"));
    let id = start(&mut h, BodyLength::Unknown);
    data(&mut h, id, b"abc").unwrap();
    h.server
        .handle_stream_end(id, [("X-Checksum", "900150983cd24fb0")], h.now)
        .unwrap();
    h.pump();
    assert!(h
        .output(c)
        .ends_with("3\r\nabc\r\n0\r\nX-Checksum: 900150983cd24fb0\r\n\r\n"));
}

/// A harness whose client reads nothing, with `config`, and a connection
/// with a `GET /` on it.
fn unread(config: Config) -> (Harness, ebb_core::ConnId) {
    let mut h = Harness::with(config);
    h.auto_write = false;
    let c = h.accept();
    h.send(c, &get("/"));
    (h, c)
}

#[test]
fn a_fast_producer_is_held_to_the_stream_buffer_and_told_when_it_may_go_on() {
    let (mut h, c) = unread(Config {
        max_stream_buffer_bytes: 1000,
        ..Config::default()
    });
    let id = h.pending.remove(0);
    h.server
        .handle_stream_start(id, 200, NONE, BodyLength::Known(5000), h.now)
        .unwrap();
    h.pump();
    let head = h.server.stream_room(id);
    assert!(head < 1000, "the head takes room too");
    let taken = data(&mut h, id, &[b'x'; 5000]).unwrap();
    assert_eq!(taken, head, "no more than the room");
    assert_eq!(h.server.stream_room(id), 0);
    assert!(!h.log.iter().any(|e| matches!(e, Event::StreamWritable(_))));
    h.write(c, 600);
    assert!(
        h.log.contains(&Event::StreamWritable(id)),
        "room for half the buffer again"
    );
    assert_eq!(h.server.stream_room(id), 600);
}

#[test]
fn the_drain_waits_for_a_stream_and_exits_the_moment_it_ends() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/events"));
    let id = start(&mut h, BodyLength::Unknown);
    h.terminate();
    h.backlog_empty();
    h.advance(Duration::from_secs(5));
    data(&mut h, id, b"still going").unwrap();
    assert!(!h.exited());
    end(&mut h, id).unwrap();
    h.eof(c);
    let report = h.exit.expect("exit once the stream ended");
    assert_eq!((report.requests_completed, report.requests_cut), (1, 0));
}

#[test]
fn the_deadline_cuts_a_chunked_stream_without_its_last_chunk() {
    let mut h = Harness::with(Config {
        drain_timeout: Duration::from_secs(1),
        ..Config::default()
    });
    let c = h.accept();
    h.send(c, &get("/events"));
    let id = start(&mut h, BodyLength::Unknown);
    data(&mut h, id, b"tick").unwrap();
    h.terminate();
    h.backlog_empty();
    h.advance(Duration::from_secs(1));
    assert_eq!(h.close_reason(c), Some(CloseReason::DeadlineCut));
    assert!(
        h.output(c).ends_with("4\r\ntick\r\n"),
        "no terminating chunk"
    );
    assert_eq!(h.exit.as_ref().unwrap().requests_cut, 1);
    assert_eq!(
        h.server.handle_stream_data(id, b"late", h.now),
        Err(StreamError::UnknownStream)
    );
}

#[test]
fn a_stream_begun_during_the_drain_closes_its_connection() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/"));
    h.terminate();
    let id = start(&mut h, BodyLength::Unknown);
    assert!(h.output(c).contains("Connection: close\r\n"));
    end(&mut h, id).unwrap();
    assert_eq!(h.half_close_reason(c), Some(CloseReason::Stopping));
}

const UPGRADE: &[u8] =
    b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly bytes";

/// A connection of `h` whose request to upgrade was answered `101` and
/// written (unless `h` writes only when told): it has left HTTP.
fn upgraded(h: &mut Harness) -> ebb_core::ConnId {
    let c = h.accept();
    h.send(c, UPGRADE);
    let id = h.pending.remove(0);
    h.server
        .handle_upgrade(id, [("Upgrade", "echo")], h.now)
        .unwrap();
    h.pump();
    c
}

#[test]
fn an_upgrade_is_answered_101_and_the_stream_is_handed_over_with_what_followed() {
    let mut h = Harness::new();
    let c = upgraded(&mut h);
    let out = h.output(c);
    assert!(
        out.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{out}"
    );
    assert!(out.contains("Connection: Upgrade\r\n") && out.contains("Upgrade: echo\r\n"));
    assert!(h.log.contains(&Event::Upgraded(c)));
    assert_eq!(h.server.take_upgraded_input(c), b"early bytes");
    assert_eq!(
        h.server.active_requests(),
        0,
        "an upgraded connection is no request"
    );
    assert!(!h.server.wants_read(c), "its bytes are the application's");
    h.server.handle_upgraded_closed(c, h.now);
    h.pump();
    assert_eq!(h.close_reason(c), Some(CloseReason::UpgradedClosed));
}

#[test]
fn input_for_the_new_protocol_is_read_while_the_101_is_written_up_to_the_room() {
    let mut h = Harness::with(Config {
        max_pipelined_bytes: 100,
        ..Config::default()
    });
    h.auto_write = false;
    let c = upgraded(&mut h);
    assert!(h.server.wants_read(c), "a few early bytes: read on");
    h.send(c, &[b'm'; 100]);
    assert!(
        !h.server.wants_read(c),
        "the room is full until the application takes the connection"
    );
    h.write(c, usize::MAX);
    let mut early = b"early bytes".to_vec();
    early.extend_from_slice(&[b'm'; 100]);
    assert_eq!(h.server.take_upgraded_input(c), early);
}

#[test]
fn a_request_that_did_not_ask_to_upgrade_cannot_be_switched() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/"));
    let id = h.pending.remove(0);
    assert_eq!(
        h.server.handle_upgrade(id, [("Upgrade", "echo")], h.now),
        Err(RespondError::NotAnUpgrade)
    );
    h.pump();
    assert_eq!(h.responses(c)[0].status, 500);
}

#[test]
fn an_upgrade_offered_in_http10_or_before_a_streamed_body_is_not_one() {
    let cases: [(&[u8], bool, bool); 4] = [
        (UPGRADE, false, true),
        (b"GET /u HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", false, false),
        (
            b"GET /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\nContent-Length: 5\r\n\r\nhello",
            true,
            false,
        ),
        // Whole, a body comes before the switch.
        (
            b"GET /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\nContent-Length: 5\r\n\r\nhello",
            false,
            true,
        ),
    ];
    for (request, stream_request_bodies, wanted) in cases {
        let mut h = Harness::with(Config {
            stream_request_bodies,
            ..Config::default()
        });
        let c = h.accept();
        h.send(c, request);
        let id = h.pending[0];
        let req = h.server.request(id).unwrap();
        assert_eq!(
            req.wants_upgrade(),
            wanted,
            "{}",
            String::from_utf8_lossy(request)
        );
        assert_eq!(req.into_owned().wants_upgrade(), wanted);
    }
}

#[test]
fn the_drain_tells_upgraded_connections_to_stop_and_the_deadline_closes_them() {
    let mut h = Harness::with(Config {
        drain_timeout: Duration::from_secs(2),
        ..Config::default()
    });
    let c = upgraded(&mut h);
    h.terminate();
    assert!(h.log.contains(&Event::StopUpgraded(c)));
    h.backlog_empty();
    h.advance(Duration::from_secs(1));
    assert!(!h.exited(), "the drain waits for it");
    h.advance(Duration::from_secs(1));
    assert_eq!(h.close_reason(c), Some(CloseReason::DeadlineCut));
    let report = h.exit.unwrap();
    assert_eq!((report.upgraded_open, report.upgraded_cut), (1, 1));
    assert_eq!(report.requests_cut, 0);
}

#[test]
fn a_second_terminate_in_pre_stop_counts_an_upgraded_connection_open_and_cut() {
    let mut h = Harness::with(Config {
        pre_stop: Duration::from_secs(5),
        ..Config::default()
    });
    let c = upgraded(&mut h);
    h.terminate();
    assert!(!h.exited(), "PreStop serves on");
    h.terminate();
    assert_eq!(h.close_reason(c), Some(CloseReason::ForcedExit));
    let report = h.exit.expect("a second terminate exits at once");
    assert_eq!(report.draining_at, None, "the drain never began");
    assert_eq!((report.upgraded_open, report.upgraded_cut), (1, 1));
}

/// A `101` still being written as the drain begins leaves HTTP during it:
/// told to stop as it does, and counted open in the report all the same.
#[test]
fn an_upgrade_written_during_the_drain_is_told_to_stop_and_counted() {
    let mut h = Harness::new();
    h.auto_write = false;
    let c = upgraded(&mut h);
    h.terminate();
    h.backlog_empty();
    assert!(!h.log.contains(&Event::StopUpgraded(c)), "not upgraded yet");
    h.write(c, usize::MAX);
    assert!(h.log.contains(&Event::Upgraded(c)));
    assert!(h.log.contains(&Event::StopUpgraded(c)));
    h.server.handle_upgraded_closed(c, h.now);
    h.pump();
    let report = h.exit.expect("nothing left");
    assert_eq!((report.upgraded_open, report.upgraded_cut), (1, 0));
}

#[test]
fn an_upgraded_connection_closed_by_the_application_lets_the_drain_exit() {
    let mut h = Harness::new();
    let c = upgraded(&mut h);
    h.terminate();
    h.backlog_empty();
    h.server.handle_upgraded_closed(c, h.now);
    h.pump();
    let report = h.exit.expect("nothing left");
    assert_eq!((report.upgraded_open, report.upgraded_cut), (1, 0));
}

fn streaming_bodies() -> Harness {
    Harness::with(Config {
        stream_request_bodies: true,
        ..Config::default()
    })
}

fn body(h: &Harness, id: ebb_core::RequestId) -> (Vec<u8>, bool) {
    let piece = h.server.request_body(id).expect("a streaming body");
    (piece.data.to_vec(), piece.done)
}

const UPLOAD_HEAD: &[u8] = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n";

/// A head and a malformed chunked body in one read: the request would be
/// handed over at its head and refused at once. Its `Request` is taken
/// back before the driver sees it, so the application never meets a
/// request it could not read (the fuzzer found the driver's read failing).
#[test]
fn a_streamed_request_refused_in_the_input_that_handed_it_over_is_never_seen() {
    let mut h = streaming_bodies();
    let c = h.accept();
    h.send(
        c,
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    assert!(h.pending.is_empty(), "no request handed over");
    assert!(!h
        .log
        .iter()
        .any(|e| matches!(e, Event::Request(_) | Event::BodyReady(_))));
    let finished = h.log.iter().find_map(|e| match e {
        Event::Finished(f) => Some(f.clone()),
        _ => None,
    });
    let finished = finished.expect("the refusal finishes");
    assert_eq!((finished.request, finished.status), (None, Some(400)));
    assert!(matches!(finished.outcome, Outcome::Rejected(_)));
    assert!(h.responses(c)[0].close);
}

#[test]
fn body_ready_is_said_when_bytes_wait_unread_and_at_the_end_not_per_arrival() {
    let mut h = streaming_bodies();
    let c = h.accept();
    h.send(c, UPLOAD_HEAD);
    let id = h.pending[0];
    let said = |h: &Harness| h.log.iter().filter(|e| **e == Event::BodyReady(id)).count();
    assert_eq!(said(&h), 0, "nothing to read yet");
    h.send(c, b"abc");
    assert_eq!(said(&h), 1, "bytes to read");
    h.send(c, b"de");
    assert_eq!(said(&h), 1, "unread ones wait already: no second word");
    h.server.handle_body_consumed(id, 5, h.now);
    h.pump();
    h.send(c, b"fghij");
    assert_eq!(said(&h), 2, "the end (and bytes to read again)");
    assert_eq!(body(&h, id), (b"fghij".to_vec(), true));
}

#[test]
fn a_streamed_body_is_read_whatever_its_head_and_pipelined_input_behind_it_waits() {
    let room = 100;
    let mut h = Harness::with(Config {
        stream_request_bodies: true,
        max_pipelined_bytes: room,
        ..Config::default()
    });
    let c = h.accept();
    h.send(c, &get("/first"));
    let first = h.pending[0];
    h.respond(c, 200, b"");
    // A head near the room: only what follows it counts against the room.
    let padding = "x".repeat(room - 10);
    let head =
        format!("POST / HTTP/1.1\r\nHost: x\r\nX-Pad: {padding}\r\nContent-Length: 3\r\n\r\n");
    h.send(c, head.as_bytes());
    let id = h.pending[0];
    assert!(h.server.wants_read(c), "the body is awaited");
    assert!(
        h.server.request(first).is_none(),
        "the answered request's id names nothing, not the one after it"
    );
    // The body ends; more than the room of pipelined requests follows it.
    let mut rest = b"abc".to_vec();
    for _ in 0..5 {
        rest.extend_from_slice(&get("/next"));
    }
    h.send(c, &rest);
    assert_eq!(body(&h, id), (b"abc".to_vec(), true));
    assert!(
        !h.server.wants_read(c),
        "pipelined input past the room waits behind the request"
    );
}

#[test]
fn a_request_body_streams_to_the_application_as_it_arrives() {
    let mut h = streaming_bodies();
    let c = h.accept();
    h.send(c, UPLOAD_HEAD);
    let id = h.pending[0];
    assert_eq!(
        h.server.request(id).unwrap().path(),
        "/upload",
        "handed over at its head"
    );
    assert_eq!(body(&h, id), (vec![], false));
    h.send(c, b"abc");
    assert!(h.log.contains(&Event::BodyReady(id)));
    assert_eq!(body(&h, id), (b"abc".to_vec(), false));
    h.server.handle_body_consumed(id, 3, h.now);
    h.pump();
    h.send(c, b"defghij");
    assert_eq!(body(&h, id), (b"defghij".to_vec(), true));
    h.server.handle_body_consumed(id, 7, h.now);
    h.respond(c, 200, b"10 bytes");
    assert!(
        !h.output(c).contains("Connection: close"),
        "read to its end: kept"
    );
    h.send(c, &get("/next"));
    assert_eq!(h.pending.len(), 1);
}

#[test]
fn a_chunked_request_body_streams_decoded() {
    let mut h = streaming_bodies();
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    );
    let id = h.pending[0];
    assert_eq!(body(&h, id), (b"abc".to_vec(), false));
    h.send(c, b"2\r\nde\r\n0\r\n\r\n");
    assert_eq!(body(&h, id), (b"abcde".to_vec(), true));
}

#[test]
fn a_streamed_body_stops_being_read_while_the_application_is_behind() {
    let mut h = Harness::with(Config {
        stream_request_bodies: true,
        max_stream_buffer_bytes: 100,
        ..Config::default()
    });
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
    );
    let id = h.pending[0];
    h.send(c, &[b'x'; 300]);
    assert_eq!(body(&h, id).0.len(), 100, "at most the buffer waits for it");
    assert!(!h.server.wants_read(c), "reading pauses");
    h.advance(Duration::from_secs(60));
    assert!(!h.closed(c), "the client is not at fault: no body timeout");
    for _ in 0..2 {
        h.server.handle_body_consumed(id, 100, h.now);
        h.pump();
        assert_eq!(body(&h, id).0.len(), 100, "more comes from what was read");
        assert!(!h.log.contains(&Event::ResumeRead(c)));
    }
    h.server.handle_body_consumed(id, 100, h.now);
    h.pump();
    assert!(
        h.log.contains(&Event::ResumeRead(c)),
        "all read: reading resumes"
    );
}

#[test]
fn a_streamed_body_whose_client_stops_sending_is_timed_out() {
    let mut h = streaming_bodies();
    let c = h.accept();
    h.send(c, UPLOAD_HEAD);
    let id = h.pending[0];
    h.send(c, b"abc");
    h.server.handle_body_consumed(id, 3, h.now);
    h.pump();
    // The application keeps up; the client sends no more.
    h.advance(Config::default().body_read_timeout + Duration::from_secs(1));
    assert!(
        h.output(c).starts_with("HTTP/1.1 408 "),
        "core answers in the application's place: {}",
        h.output(c)
    );
}

#[test]
fn continue_is_sent_when_the_application_first_wants_the_body() {
    let mut h = streaming_bodies();
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    );
    assert!(h.output(c).is_empty(), "not before the application asks");
    let id = h.pending[0];
    h.server.handle_body_wanted(id, h.now);
    h.pump();
    assert_eq!(h.output(c), "HTTP/1.1 100 Continue\r\n\r\n");
    h.server.handle_body_wanted(id, h.now);
    h.pump();
    assert_eq!(h.output(c).matches("100 Continue").count(), 1, "once");
}

#[test]
fn a_body_held_back_for_100_continue_is_timed_from_when_the_application_asks() {
    let mut h = streaming_bodies();
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    );
    // The client rightly waits for a 100 the application has not yet
    // caused: long past the body timeout and the rate's grace, no 408.
    h.advance_ms(60_000);
    assert!(h.output(c).is_empty(), "{}", h.output(c));
    assert!(!h.closed(c) && !h.half_closed(c));
    let id = h.pending[0];
    h.server.handle_body_wanted(id, h.now);
    h.pump();
    assert_eq!(h.output(c), "HTTP/1.1 100 Continue\r\n\r\n");
    // Timed from the ask: a body trickled in soon after is not too slow.
    h.advance_ms(1_000);
    h.send(c, b"ab");
    assert!(!h.output(c).contains("408"), "{}", h.output(c));
    // And a client that then stalls hears 408 a body timeout (10 s) later.
    h.advance_ms(9_000);
    assert!(!h.output(c).contains("408"), "{}", h.output(c));
    h.advance_ms(1_500);
    assert!(h.output(c).contains("HTTP/1.1 408 "), "{}", h.output(c));
}

#[test]
fn a_body_sent_without_waiting_is_timed_from_the_request_however_late_it_is_asked_for() {
    let mut h = streaming_bodies();
    let c = h.accept();
    // Behind another request, 3 KB long: its bytes are not this body's.
    let first = format!(
        "GET /first HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(3000)
    );
    h.send(c, first.as_bytes());
    h.respond(c, 200, b"ok");
    h.send(c, UPLOAD_HEAD);
    // A byte every 5 s keeps the body timer off, not the rate (500 B/s
    // once 10 s have passed since the request began).
    h.advance_ms(5_000);
    h.send(c, b"a");
    h.advance_ms(5_000);
    h.send(c, b"b");
    h.advance_ms(2_000);
    let id = h.pending[0];
    h.server.handle_body_wanted(id, h.now);
    h.pump();
    h.advance_ms(3_000);
    h.send(c, b"c");
    assert!(
        h.output(c).contains("HTTP/1.1 408 "),
        "too slow since the request began: {}",
        h.output(c)
    );
}

#[test]
fn continue_is_sent_for_a_request_behind_another_on_its_connection() {
    let mut h = streaming_bodies();
    let c = h.accept();
    h.send(c, &ebb_testkit::harness::get("/first"));
    h.respond(c, 200, b"ok");
    let before = h.output(c).len();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    );
    let id = h.pending[0];
    assert!(h.server.awaits_answer(id));
    h.server.handle_body_wanted(id, h.now);
    h.pump();
    assert_eq!(&h.output(c)[before..], "HTTP/1.1 100 Continue\r\n\r\n");
    h.send(c, b"abcd");
    h.respond(c, 200, b"got it");
    assert!(!h.server.awaits_answer(id), "answered");
}

#[test]
fn answering_before_the_body_is_read_closes_the_connection() {
    let mut h = streaming_bodies();
    let c = h.accept();
    h.send(c, UPLOAD_HEAD);
    h.send(c, b"abc");
    h.respond(c, 413, b"too big for me");
    assert!(h.output(c).contains("Connection: close"));
    assert_eq!(h.half_close_reason(c), Some(CloseReason::BodyUnread));
}

#[test]
fn a_request_behind_the_clients_fin_is_read_whole_and_never_handed_over_cut_short() {
    for (body, handed) in [(&b"abc"[..], false), (&b"0123456789"[..], true)] {
        let mut h = streaming_bodies();
        let c = h.accept();
        let mut input = get("/first");
        input.extend_from_slice(UPLOAD_HEAD);
        input.extend_from_slice(body);
        h.send(c, &input);
        h.eof(c);
        // The upload's head is read only once the first request is answered,
        // when the client's FIN has come: all its body is there already.
        h.respond(c, 200, b"ok");
        if handed {
            let id = h.pending[0];
            assert_eq!(h.server.request(id).unwrap().body(), body, "whole");
            assert!(h.server.request_body(id).is_none(), "not streamed");
        } else {
            assert!(h.pending.is_empty(), "a body cut short is not handed over");
            assert_eq!(h.close_reason(c), Some(CloseReason::ClientClosed));
        }
    }
}

#[test]
fn no_100_continue_is_sent_once_the_client_has_sent_its_fin() {
    for mut h in [Harness::new(), streaming_bodies()] {
        let c = h.accept();
        let mut input = get("/first");
        input.extend_from_slice(
            b"PUT /u HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        );
        h.send(c, &input);
        h.eof(c);
        h.respond(c, 200, b"ok");
        assert!(!h.output(c).contains("100 Continue"), "{}", h.output(c));
        assert_eq!(h.close_reason(c), Some(CloseReason::ClientClosed));
    }
}

#[test]
fn a_streamed_body_has_its_own_bound() {
    let mut h = Harness::with(Config {
        stream_request_bodies: true,
        max_body_bytes: 10,
        max_streamed_body_bytes: 1_000_000,
        ..Config::default()
    });
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n",
    );
    assert_eq!(
        h.pending.len(),
        1,
        "max_body_bytes bounds whole bodies only"
    );
    let d = h.accept();
    h.send(
        d,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000001\r\n\r\n",
    );
    assert_eq!(h.responses(d)[0].status, 413);
}

#[test]
fn a_client_gone_mid_body_ends_the_streamed_request() {
    let mut h = streaming_bodies();
    let c = h.accept();
    h.send(c, UPLOAD_HEAD);
    h.send(c, b"abc");
    h.eof(c);
    assert_eq!(h.close_reason(c), Some(CloseReason::ClientClosed));
    assert_eq!(h.server.active_requests(), 0);
}

#[test]
fn the_deadline_cuts_an_upload_the_application_is_reading() {
    let mut h = Harness::with(Config {
        stream_request_bodies: true,
        drain_timeout: Duration::from_secs(1),
        ..Config::default()
    });
    let c = h.accept();
    h.send(c, UPLOAD_HEAD);
    h.terminate();
    h.backlog_empty();
    h.advance_ms(500);
    h.send(c, b"abc");
    assert!(!h.exited(), "the drain waits for it");
    h.advance_ms(500);
    assert_eq!(h.close_reason(c), Some(CloseReason::DeadlineCut));
    assert_eq!(h.exit.as_ref().unwrap().requests_cut, 1);
    assert!(
        !h.log.iter().any(|e| matches!(e, Event::Farewell(..))),
        "the application has it: no farewell"
    );
}

#[test]
fn a_producer_held_back_hears_it_may_go_on_when_everything_is_written_at_once() {
    let mut h = Harness::with(Config {
        max_stream_buffer_bytes: 1000,
        ..Config::default()
    });
    h.auto_write = false;
    let c = h.accept();
    h.send(c, &get("/"));
    let id = h.pending.remove(0);
    h.server
        .handle_stream_start(id, 200, NONE, BodyLength::Unknown, h.now)
        .unwrap();
    h.pump();
    let offered = [b'x'; 5000];
    let taken = data(&mut h, id, &offered).unwrap();
    assert!(taken < offered.len());
    h.write(c, usize::MAX);
    assert!(
        h.log.contains(&Event::StreamWritable(id)),
        "the socket took it all: room again"
    );
}

#[test]
fn streams_ended_after_they_were_written_keep_the_idle_timers_in_order() {
    let mut h = Harness::new();
    let (a, b) = (h.accept(), h.accept());
    h.send(a, &get("/a"));
    h.send(b, &get("/b"));
    let id_a = start(&mut h, BodyLength::Known(2));
    let id_b = start(&mut h, BodyLength::Known(2));
    assert_eq!(data(&mut h, id_a, b"aa"), Ok(2));
    h.advance_ms(100);
    assert_eq!(data(&mut h, id_b, b"bb"), Ok(2));
    h.advance_ms(400);
    // Each ends with nothing left to write: its connection was busy until
    // now, and its keep-alive wait starts now (the harness checks the timer
    // lists after every event).
    end(&mut h, id_b).unwrap();
    end(&mut h, id_a).unwrap();
    let keep_alive = Config::default().keep_alive_timeout;
    h.advance(keep_alive - Duration::from_millis(1));
    let ended = |h: &Harness, c| h.closed(c) || h.half_closed(c);
    assert!(
        !ended(&h, a) && !ended(&h, b),
        "kept from the streams' ends"
    );
    h.advance_ms(2);
    assert!(ended(&h, a) && ended(&h, b));
}

#[test]
fn a_client_gone_mid_body_still_gets_the_rest_of_the_response_before_it() {
    let mut h = streaming_bodies();
    let c = h.accept();
    let mut two = get("/stream");
    two.extend_from_slice(UPLOAD_HEAD);
    h.send(c, &two);
    let first = start(&mut h, BodyLength::Unknown);
    assert_eq!(data(&mut h, first, b"hello"), Ok(5));
    h.auto_write = false;
    end(&mut h, first).unwrap();
    let upload = *h
        .pending
        .last()
        .expect("the upload, handed over at its head");
    assert_eq!(upload.seq(), 1);
    h.eof(c);
    assert!(
        !h.closed(c),
        "the first response's last chunk is still queued"
    );
    h.write(c, usize::MAX);
    assert_eq!(h.responses(c)[0].body, b"hello", "{}", h.output(c));
    assert_eq!(h.close_reason(c), Some(CloseReason::ClientClosed));
    assert_eq!(h.server.active_requests(), 0);
}

/// Streamed request bodies, at most four bytes waiting for the application.
fn four_byte_stream_buffer() -> Harness {
    Harness::with(Config {
        stream_request_bodies: true,
        max_stream_buffer_bytes: 4,
        ..Config::default()
    })
}

#[test]
fn a_fin_behind_a_whole_body_held_back_by_the_buffer_loses_nothing() {
    let mut h = four_byte_stream_buffer();
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789",
    );
    let id = h.pending[0];
    h.eof(c);
    assert!(!h.closed(c), "the whole body is here");
    let mut got = Vec::new();
    loop {
        let (piece, done) = body(&h, id);
        got.extend_from_slice(&piece);
        h.server.handle_body_consumed(id, piece.len(), h.now);
        h.pump();
        if done {
            break;
        }
        assert!(!piece.is_empty(), "the body moves up as it is read");
    }
    assert_eq!(got, b"0123456789");
    h.respond(c, 200, b"10 bytes");
    assert_eq!(h.responses(c)[0].status, 200);
    assert_eq!(h.close_reason(c), Some(CloseReason::ClientClosed));
}

#[test]
fn a_fin_mid_body_held_back_by_the_buffer_lets_the_application_read_what_came() {
    let mut h = four_byte_stream_buffer();
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n012345",
    );
    let id = h.pending[0];
    h.eof(c);
    assert_eq!(body(&h, id), (b"0123".to_vec(), false));
    h.server.handle_body_consumed(id, 4, h.now);
    h.pump();
    assert_eq!(
        h.close_reason(c),
        Some(CloseReason::ClientClosed),
        "short by four"
    );
    assert_eq!(h.server.active_requests(), 0);
}

#[test]
fn an_early_answer_to_a_request_that_asked_to_close_lingers_for_its_body() {
    let mut h = streaming_bodies();
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10\r\n\r\n",
    );
    h.respond(c, 200, b"early answer");
    assert_eq!(h.responses(c)[0].status, 200);
    assert!(h.responses(c)[0].close);
    assert!(
        !h.closed(c),
        "a plain close would reset the client still sending"
    );
    assert_eq!(h.half_close_reason(c), Some(CloseReason::BodyUnread));
}

/// A chunked stream whose buffer is full takes nothing, and writes no
/// empty chunk (which would end the body): the body arrives whole.
#[test]
fn a_chunked_stream_with_no_room_takes_nothing_and_writes_no_chunk() {
    let (mut h, c) = unread(Config {
        max_stream_buffer_bytes: 1000,
        ..Config::default()
    });
    let id = start(&mut h, BodyLength::Unknown);
    let body: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut rest = &body[..];
    while !rest.is_empty() {
        let taken = data(&mut h, id, rest).unwrap();
        assert!(taken > 0, "room was made before each offer");
        rest = &rest[taken..];
        if !rest.is_empty() {
            assert_eq!(data(&mut h, id, rest), Ok(0), "no room left");
        }
        h.write(c, usize::MAX);
    }
    end(&mut h, id).unwrap();
    h.write(c, usize::MAX);
    let responses = h.responses(c);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].body, body);
}

/// A client that reads nothing is not kept by a producer that keeps
/// offering: what it offers finds no room and is no progress, so the
/// write stall closes the connection on time.
#[test]
fn a_producer_offering_into_a_full_buffer_does_not_hold_off_the_write_stall() {
    let (mut h, c) = unread(Config {
        max_stream_buffer_bytes: 1000,
        write_stall_timeout: Duration::from_secs(5),
        ..Config::default()
    });
    let id = start(&mut h, BodyLength::Unknown);
    assert!(data(&mut h, id, &[b'x'; 2000]).unwrap() > 0);
    for _ in 0..4 {
        h.advance_ms(1_000);
        assert_eq!(data(&mut h, id, b"more"), Ok(0));
    }
    // Nor does its end, queued behind what waits.
    end(&mut h, id).unwrap();
    assert!(!h.closed(c));
    h.advance_ms(1_000);
    assert_eq!(h.close_reason(c), Some(CloseReason::WriteStall));
}

/// Nor is a streamed response's head, or a `101`, queued behind a
/// response the client is not reading.
#[test]
fn a_stream_or_a_switch_queued_behind_a_stalled_response_does_not_restart_the_stall() {
    for switch in [false, true] {
        let (mut h, c) = unread(Config {
            write_stall_timeout: Duration::from_secs(5),
            ..Config::default()
        });
        let second: &[u8] = if switch {
            UPGRADE
        } else {
            b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n"
        };
        h.send(c, second);
        h.respond(c, 200, b"first");
        h.advance_ms(4_000);
        let id = h.pending.remove(0);
        if switch {
            h.server
                .handle_upgrade(id, [("Upgrade", "echo")], h.now)
                .unwrap();
        } else {
            h.server
                .handle_stream_start(id, 200, NONE, BodyLength::Unknown, h.now)
                .unwrap();
        }
        h.pump();
        assert!(!h.closed(c), "switch: {switch}");
        h.advance_ms(1_000);
        assert_eq!(
            h.close_reason(c),
            Some(CloseReason::WriteStall),
            "switch: {switch}"
        );
    }
}

/// A streamed body is found by its own request's id alone: not by another
/// connection's, nor by an earlier request's on the same connection.
#[test]
fn a_streamed_body_answers_to_its_own_request_id_alone() {
    let mut h = streaming_bodies();
    let first = h.accept();
    let second = h.accept();
    h.send(first, UPLOAD_HEAD);
    h.send(first, b"1111");
    let on_first = h.pending[0];
    h.send(second, &get("/before"));
    let answered = h.pending[1];
    h.respond(second, 200, b"ok");
    h.send(second, UPLOAD_HEAD);
    h.send(second, b"22");
    let on_second = h.pending[1];
    assert_eq!(on_second.conn(), second);
    assert_eq!(body(&h, on_first), (b"1111".to_vec(), false));
    assert_eq!(body(&h, on_second), (b"22".to_vec(), false));
    assert_eq!(h.server.request_body(answered), None, "answered already");
    // Consumed and asked for by the same ids, each on its own.
    h.server.handle_body_consumed(on_second, 2, h.now);
    h.server.handle_body_consumed(answered, 4, h.now);
    h.pump();
    assert_eq!(body(&h, on_first), (b"1111".to_vec(), false));
    assert_eq!(body(&h, on_second), (Vec::new(), false));
}

/// So is a streamed response: an earlier request's id on the same
/// connection feeds nothing into it.
#[test]
fn a_streamed_response_takes_data_for_its_own_request_id_alone() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/before"));
    let answered = h.pending[0];
    h.respond(c, 200, b"ok");
    h.send(c, &get("/stream"));
    let id = start(&mut h, BodyLength::Unknown);
    assert_eq!(
        data(&mut h, answered, b"not mine"),
        Err(StreamError::UnknownStream)
    );
    assert_eq!(
        h.server.handle_stream_end(answered, NONE, h.now),
        Err(StreamError::UnknownStream)
    );
    data(&mut h, id, b"mine").unwrap();
    end(&mut h, id).unwrap();
    let responses = h.responses(c);
    assert_eq!(responses[1].body, b"mine");
}

/// The driver logs these: each error names its own problem.
#[test]
fn each_error_is_told_in_words_of_its_own() {
    let mut shown: Vec<String> = [
        StreamError::UnknownStream,
        StreamError::LengthMismatch,
        StreamError::InvalidTrailer,
    ]
    .iter()
    .map(ToString::to_string)
    .chain(
        [
            RespondError::UnknownRequest,
            RespondError::InvalidStatus,
            RespondError::InvalidHeader,
            RespondError::NotAnUpgrade,
        ]
        .iter()
        .map(ToString::to_string),
    )
    .collect();
    let count = shown.len();
    assert!(shown.iter().all(|s| s.len() > 5), "{shown:?}");
    shown.sort_unstable();
    shown.dedup();
    assert_eq!(shown.len(), count, "an error told twice");
}
