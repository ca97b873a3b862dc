//! Pipelined requests handed over together and answered in any order: the
//! responses leave in request order, nothing is handed past a close, and
//! whatever cannot go ahead waits for its turn.

use ebb_core::{
    BodyLength, Bytes, CloseReason, Config, ConnId, Event, Finished, Outcome, RequestId,
    StreamError,
};
use ebb_testkit::harness::{get, Harness};

const NONE: [(&str, &str); 0] = [];

fn batch(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Answers request `id` with `body`.
fn answer(h: &mut Harness, id: RequestId, body: &'static [u8]) {
    h.pending.retain(|&p| p != id);
    h.server
        .handle_response(id, 200, NONE, Bytes::from_static(body), h.now)
        .expect("a valid response");
    h.pump();
}

fn targets(h: &Harness) -> Vec<String> {
    h.pending
        .iter()
        .map(|&id| {
            h.server
                .request(id)
                .expect("handed over")
                .target()
                .to_owned()
        })
        .collect()
}

fn bodies(h: &Harness, c: ConnId) -> Vec<String> {
    h.responses(c)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

fn finished(h: &Harness) -> Vec<&Finished> {
    h.log
        .iter()
        .filter_map(|e| match e {
            Event::Finished(f) => Some(f),
            _ => None,
        })
        .collect()
}

/// A connection with `/0` dispatched and `second` handed ahead behind
/// it, whose answer is a stream of `length` started before its turn.
fn stream_started_ahead(second: &[u8], length: BodyLength) -> (Harness, ConnId, [RequestId; 2]) {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &batch(&[&get("/0"), second]));
    let ids: [RequestId; 2] = h.pending[..].try_into().expect("both handed over");
    h.server
        .handle_stream_start(ids[1], 200, NONE, length, h.now)
        .unwrap();
    (h, c, ids)
}

/// `/0` is answered: the stream's turn comes.
fn its_turn_comes(h: &mut Harness, ids: [RequestId; 2]) {
    h.pump();
    answer(h, ids[0], b"0");
}

#[test]
fn a_batch_is_handed_over_at_once_and_answered_out_of_order_leaves_in_order() {
    let mut h = Harness::new();
    h.auto_write = false;
    let c = h.accept();
    h.send(c, &batch(&[&get("/0"), &get("/1"), &get("/2")]));
    assert_eq!(targets(&h), ["/0", "/1", "/2"]);
    let ids = h.pending.clone();
    answer(&mut h, ids[2], b"two");
    answer(&mut h, ids[1], b"one");
    assert!(
        h.server.transmit(c).iter().all(|s| s.is_empty()),
        "nothing leaves before the first answer"
    );
    answer(&mut h, ids[0], b"zero");
    // All three leave in one write.
    h.write(c, usize::MAX);
    assert_eq!(bodies(&h, c), ["zero", "one", "two"]);
    let seqs: Vec<_> = finished(&h).iter().map(|f| f.request.unwrap()).collect();
    assert_eq!(seqs, ids, "each request finishes once, in order");
    assert!(finished(&h).iter().all(|f| f.outcome == Outcome::Complete));
    assert_eq!(h.server.active_requests(), 0);
    h.send(c, &get("/3"));
    assert_eq!(targets(&h), ["/3"], "the connection serves on");
}

#[test]
fn at_most_max_pipelined_requests_are_held_at_once() {
    let mut h = Harness::with(Config {
        max_pipelined_requests: 3,
        ..Config::default()
    });
    let c = h.accept();
    let five: Vec<Vec<u8>> = (0..5).map(|i| get(&format!("/{i}"))).collect();
    h.send(c, &five.concat());
    assert_eq!(targets(&h), ["/0", "/1", "/2"]);
    h.respond(c, 200, b"0");
    assert_eq!(targets(&h), ["/1", "/2", "/3"]);
    for _ in 0..4 {
        h.respond(c, 200, b"n");
    }
    assert_eq!(h.responses(c).len(), 5);
}

#[test]
fn nothing_is_handed_ahead_past_a_request_that_closes() {
    let mut h = Harness::new();
    let c = h.accept();
    let close = b"GET /close HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    h.send(c, &batch(&[&get("/0"), close, &get("/never")]));
    assert_eq!(targets(&h), ["/0", "/close"]);
    let ids = h.pending.clone();
    answer(&mut h, ids[1], b"bye");
    answer(&mut h, ids[0], b"zero");
    assert_eq!(bodies(&h, c), ["zero", "bye"]);
    assert!(h.responses(c)[1].close);
    assert!(h.pending.is_empty(), "/never is not handed over");
    assert_eq!(h.half_close_reason(c), Some(CloseReason::ClientAsked));
}

#[test]
fn with_keep_alive_off_nothing_is_handed_ahead() {
    // Every response closes its connection: the request behind the first
    // would be stranded behind that close.
    let mut h = Harness::with(Config {
        keep_alive_timeout: std::time::Duration::ZERO,
        ..Config::default()
    });
    let c = h.accept();
    h.send(c, &batch(&[&get("/0"), &get("/never")]));
    assert_eq!(targets(&h), ["/0"]);
    h.respond(c, 200, b"0");
    assert!(h.responses(c)[0].close);
    assert!(h.pending.is_empty(), "/never is not handed over");
}

#[test]
fn chunked_bodies_and_upgrades_wait_for_their_turn_and_so_does_what_follows() {
    let mut h = Harness::new();
    let c = h.accept();
    let chunked =
        b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    h.send(c, &batch(&[&get("/0"), chunked, &get("/2")]));
    assert_eq!(targets(&h), ["/0"]);
    h.respond(c, 200, b"0");
    assert_eq!(
        targets(&h),
        ["/up", "/2"],
        "its turn came: it goes, /2 ahead"
    );
    assert_eq!(h.server.request(h.pending[0]).unwrap().body(), b"abc");

    let mut h = Harness::new();
    let c = h.accept();
    let upgrade =
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    h.send(c, &batch(&[&get("/0"), upgrade, &get("/2")]));
    assert_eq!(targets(&h), ["/0"]);
    h.respond(c, 200, b"0");
    assert_eq!(targets(&h), ["/ws"], "nothing is handed past an upgrade");
}

#[test]
fn a_length_body_whole_in_the_input_goes_ahead_with_its_request() {
    let mut h = Harness::new();
    let c = h.accept();
    let post = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    h.send(c, &batch(&[&get("/0"), post, b"\r\n", &get("/2")]));
    assert_eq!(targets(&h), ["/0", "/p", "/2"]);
    let p = h.server.request(h.pending[1]).unwrap();
    assert_eq!((p.method(), p.body()), ("POST", &b"hello"[..]));
    assert_eq!(p.header("content-length"), Some(&b"5"[..]));
    let ids = h.pending.clone();
    answer(&mut h, ids[2], b"2");
    answer(&mut h, ids[1], b"p");
    answer(&mut h, ids[0], b"0");
    assert_eq!(bodies(&h, c), ["0", "p", "2"]);
}

#[test]
fn a_head_arriving_piece_by_piece_goes_ahead_once_whole() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/0"));
    let next = get("/1");
    for byte in &next[..next.len() - 1] {
        h.send(c, std::slice::from_ref(byte));
        assert_eq!(targets(&h), ["/0"]);
    }
    h.send(c, &next[next.len() - 1..]);
    assert_eq!(targets(&h), ["/0", "/1"]);
    let ids = h.pending.clone();
    answer(&mut h, ids[1], b"1");
    answer(&mut h, ids[0], b"0");
    assert_eq!(bodies(&h, c), ["0", "1"]);
}

#[test]
fn a_bad_request_behind_waits_for_its_turn_to_be_refused() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &batch(&[&get("/0"), b"BAD\x01 / HTTP/1.1\r\n\r\n"]));
    assert_eq!(targets(&h), ["/0"]);
    h.respond(c, 200, b"0");
    let responses = h.responses(c);
    assert_eq!(responses[0].status, 200);
    assert_eq!(responses[1].status, 400);
}

#[test]
fn a_head_request_ahead_gets_no_body_and_a_failure_ahead_gets_500_in_its_turn() {
    let mut h = Harness::new();
    let c = h.accept();
    let head = b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n";
    h.send(c, &batch(&[&get("/0"), head, &get("/2")]));
    let ids = h.pending.clone();
    answer(&mut h, ids[1], b"not sent");
    h.server.handle_app_failure(ids[2], h.now);
    h.pump();
    answer(&mut h, ids[0], b"0");
    let responses = h.responses(c);
    assert_eq!(responses.len(), 3);
    assert!(responses[1].body.is_empty());
    assert_eq!(responses[1].header("content-length"), Some("8"));
    assert_eq!(responses[2].status, 500);
    let outcomes: Vec<_> = finished(&h).iter().map(|f| f.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Complete, Outcome::Complete, Outcome::AppFault]
    );
}

#[test]
fn a_stream_started_ahead_takes_bytes_from_its_turn() {
    let (mut h, c, ids) = stream_started_ahead(&get("/1"), BodyLength::Unknown);
    assert_eq!(h.server.handle_stream_data(ids[1], b"early", h.now), Ok(0));
    assert_eq!(h.server.stream_room(ids[1]), 0);
    its_turn_comes(&mut h, ids);
    assert!(
        h.log.contains(&Event::StreamWritable(ids[1])),
        "its turn came: it may write"
    );
    assert_eq!(h.server.handle_stream_data(ids[1], b"late", h.now), Ok(4));
    h.server.handle_stream_end(ids[1], NONE, h.now).unwrap();
    h.pump();
    assert_eq!(bodies(&h, c), ["0", "late"]);
    assert_eq!(h.server.active_requests(), 0);
}

#[test]
fn a_stream_ended_before_its_turn_is_sent_whole_or_broken_as_at_its_turn() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &batch(&[&get("/0"), &get("/1"), &get("/2")]));
    let ids = h.pending.clone();
    h.server
        .handle_stream_start(ids[1], 200, NONE, BodyLength::Unknown, h.now)
        .unwrap();
    h.server
        .handle_stream_end(ids[1], [("X-Sum", "0")], h.now)
        .unwrap();
    h.server
        .handle_stream_start(ids[2], 200, NONE, BodyLength::Known(3), h.now)
        .unwrap();
    assert_eq!(
        h.server.handle_stream_end(ids[2], NONE, h.now),
        Err(StreamError::LengthMismatch)
    );
    h.pump();
    answer(&mut h, ids[0], b"0");
    let out = h.output(c);
    assert!(
        out.contains("\r\n\r\n0\r\nX-Sum: 0\r\n\r\nHTTP/1.1 200 OK"),
        "{out}"
    );
    assert!(out.ends_with("Content-Length: 3\r\n\r\n"), "{out}");
    assert_eq!(h.half_close_reason(c), Some(CloseReason::StreamMismatch));
    let outcomes: Vec<_> = finished(&h).iter().map(|f| f.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Complete,
            Outcome::Complete,
            Outcome::Unfinished(CloseReason::StreamMismatch)
        ]
    );
}

#[test]
fn an_abort_finishes_every_request_handed_ahead_answered_or_not() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &batch(&[&get("/0"), &get("/1"), &get("/2")]));
    let ids = h.pending.clone();
    answer(&mut h, ids[2], b"2");
    h.abort(c);
    let ended: Vec<_> = finished(&h)
        .iter()
        .map(|f| (f.request.unwrap(), f.outcome, f.status))
        .collect();
    let cut = Outcome::Unfinished(CloseReason::Aborted);
    assert_eq!(
        ended,
        [
            (ids[0], cut, None),
            (ids[1], cut, None),
            (ids[2], cut, Some(200))
        ]
    );
    assert_eq!(h.server.active_requests(), 0);
    assert!(!h.server.awaits_answer(ids[1]));
}

#[test]
fn in_the_drain_nothing_sent_after_it_began_is_handed_ahead() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/0"));
    h.terminate();
    h.send(c, &get("/late"));
    assert_eq!(targets(&h), ["/0"], "/0's answer closes: /late is after it");
    h.respond(c, 200, b"0");
    let responses = h.responses(c);
    assert_eq!(responses.len(), 1);
    assert!(responses[0].close);
    assert!(h.pending.is_empty());
}

#[test]
fn in_the_drain_what_was_pipelined_before_it_goes_ahead() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &batch(&[&get("/0"), &get("/1")]));
    h.terminate();
    assert_eq!(targets(&h), ["/0", "/1"]);
    let ids = h.pending.clone();
    answer(&mut h, ids[1], b"1");
    answer(&mut h, ids[0], b"0");
    let responses = h.responses(c);
    assert_eq!(bodies(&h, c), ["0", "1"]);
    assert!(!responses[0].close && responses[1].close);
}

#[test]
fn one_at_a_time_is_still_to_be_had() {
    let mut h = Harness::with(Config {
        max_pipelined_requests: 1,
        ..Config::default()
    });
    let c = h.accept();
    h.send(c, &batch(&[&get("/0"), &get("/1")]));
    assert_eq!(targets(&h), ["/0"]);
    h.respond(c, 200, b"0");
    assert_eq!(targets(&h), ["/1"]);
}

#[test]
fn a_stream_started_ahead_and_offered_nothing_is_told_nothing_at_its_turn() {
    let (mut h, c, ids) = stream_started_ahead(&get("/1"), BodyLength::Known(2));
    its_turn_comes(&mut h, ids);
    assert!(
        !h.log.contains(&Event::StreamWritable(ids[1])),
        "it was never held back"
    );
    assert_eq!(h.server.handle_stream_data(ids[1], b"ok", h.now), Ok(2));
    h.server.handle_stream_end(ids[1], NONE, h.now).unwrap();
    h.pump();
    assert_eq!(bodies(&h, c), ["0", "ok"]);
}

#[test]
fn empty_lines_before_a_request_ahead_count_as_at_its_turn() {
    // Up to `max_head_bytes` of them, it goes ahead; one byte more, and it
    // waits for its turn to be refused, as it would be had it come alone.
    for (blank, handed_ahead, status) in [(256, true, 200), (257, false, 431)] {
        let mut h = Harness::with(Config {
            max_head_bytes: 256,
            ..Config::default()
        });
        let c = h.accept();
        h.send(c, &batch(&[&get("/0"), &b"\n".repeat(blank), &get("/1")]));
        let expected: &[&str] = if handed_ahead { &["/0", "/1"] } else { &["/0"] };
        assert_eq!(targets(&h), expected, "{blank} bytes of empty lines");
        while !h.pending.is_empty() {
            h.respond(c, 200, b"ok");
        }
        let statuses: Vec<u16> = h.responses(c).iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, status], "{blank} bytes of empty lines");
    }
}

#[test]
fn a_bodiless_stream_started_ahead_takes_what_it_is_offered_and_sends_none_of_it() {
    let (mut h, c, ids) =
        stream_started_ahead(b"HEAD /1 HTTP/1.1\r\nHost: h\r\n\r\n", BodyLength::Unknown);
    assert_eq!(h.server.handle_stream_data(ids[1], b"early", h.now), Ok(5));
    its_turn_comes(&mut h, ids);
    assert!(
        !h.log.contains(&Event::StreamWritable(ids[1])),
        "it took what it was offered: it was never held back"
    );
    h.server.handle_stream_end(ids[1], NONE, h.now).unwrap();
    h.pump();
    assert_eq!(bodies(&h, c), ["0", ""]);
    assert!(!h.output(c).contains("early"));
    let ended: Vec<_> = finished(&h)
        .iter()
        .map(|f| (f.outcome, f.body_bytes))
        .collect();
    assert_eq!(ended, [(Outcome::Complete, 1), (Outcome::Complete, 0)]);
}

#[test]
fn a_stream_ahead_offered_more_than_it_declared_is_broken_at_once() {
    let (mut h, c, ids) = stream_started_ahead(&get("/1"), BodyLength::Known(3));
    assert_eq!(
        h.server.handle_stream_data(ids[1], b"four", h.now),
        Err(StreamError::LengthMismatch)
    );
    its_turn_comes(&mut h, ids);
    assert_eq!(h.half_close_reason(c), Some(CloseReason::StreamMismatch));
    let outcomes: Vec<_> = finished(&h).iter().map(|f| f.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Complete,
            Outcome::Unfinished(CloseReason::StreamMismatch)
        ]
    );
}

#[test]
fn a_stream_ahead_offered_an_empty_piece_is_told_nothing_at_its_turn() {
    let (mut h, _, ids) = stream_started_ahead(&get("/1"), BodyLength::Unknown);
    assert_eq!(h.server.handle_stream_data(ids[1], b"", h.now), Ok(0));
    its_turn_comes(&mut h, ids);
    assert!(
        !h.log.contains(&Event::StreamWritable(ids[1])),
        "it was offered nothing, so held nothing back"
    );
}

#[test]
fn an_empty_stream_of_declared_length_zero_ended_ahead_is_sent_whole() {
    let (mut h, c, ids) = stream_started_ahead(&get("/1"), BodyLength::Known(0));
    h.server.handle_stream_end(ids[1], NONE, h.now).unwrap();
    its_turn_comes(&mut h, ids);
    assert_eq!(bodies(&h, c), ["0", ""]);
    assert!(!h.closed(c), "the connection serves on");
    let outcomes: Vec<_> = finished(&h).iter().map(|f| f.outcome).collect();
    assert_eq!(outcomes, [Outcome::Complete, Outcome::Complete]);
}
