//! The graceful drain, driven with a virtual clock: phases, the backlog and
//! the listener, idle connections, `Connection: close`, exit at once, the
//! deadline, and the drain report.

use std::time::Duration;

use ebb_core::{Config, ConnId, Event, Forced, Phase, Time};
use ebb_testkit::harness::{get, Harness};

fn draining() -> Harness {
    Harness::new()
}

#[test]
fn with_nothing_open_exit_follows_the_listener_close() {
    let mut h = draining();
    h.terminate();
    assert_eq!(h.log, vec![Event::DrainBacklog]);
    h.backlog_empty();
    assert!(h.listener_closed && h.exited());
    let report = h.exit.clone().unwrap();
    assert_eq!(report.forced, None);
    assert_eq!(report.total(), Duration::ZERO);
}

#[test]
fn pre_stop_keeps_serving_while_reporting_stopping() {
    let mut h = Harness::with(Config {
        pre_stop: Duration::from_secs(5),
        ..Config::default()
    });
    assert!(!h.server.is_stopping());
    h.terminate();
    assert!(h.server.is_stopping());
    assert!(!h.log.contains(&Event::DrainBacklog));
    let c = h.accept();
    h.send(c, &get("/healthz"));
    h.respond(c, 503, b"stopping");
    assert!(
        h.output(c).contains("Connection: close"),
        "every response in PreStop closes, so clients leave before the drain"
    );
    assert_eq!(
        h.half_close_reason(c),
        Some(ebb_core::CloseReason::Stopping)
    );
    let d = h.accept();
    h.send(d, &get("/"));
    assert_eq!(h.pending.len(), 1, "still serving new connections");
    h.advance_ms(4_999);
    assert!(matches!(h.server.phase(), Phase::PreStop { .. }));
    h.advance_ms(1);
    assert!(h.log.contains(&Event::DrainBacklog));
    assert_eq!(h.exit, None);
    let report_drain_start = h.now;
    h.backlog_empty();
    h.eof(c);
    h.respond(d, 200, b"ok");
    h.eof(d);
    let report = h.exit.expect("exit once the last connection is gone");
    assert_eq!(report.draining_at, Some(report_drain_start));
    assert_eq!(report.terminated_at, Time::ZERO);
}

/// A server in a 5 s PreStop, with a connection accepted before it began.
fn in_pre_stop() -> (Harness, ConnId) {
    let mut h = Harness::with(Config {
        pre_stop: Duration::from_secs(5),
        ..Config::default()
    });
    let c = h.accept();
    h.terminate();
    (h, c)
}

/// A client that pipelined requests before it could see PreStop's close
/// has them answered, the last with the close, as the drain answers what
/// came before it; it is not left to send them again.
#[test]
fn pre_stop_answers_what_was_pipelined_before_it_closes() {
    let (mut h, c) = in_pre_stop();
    h.send(c, &[get("/1"), get("/2")].concat());
    h.respond(c, 200, b"1");
    h.respond(c, 200, b"2");
    let responses = h.responses(c);
    assert_eq!(responses.len(), 2, "/2 was answered");
    assert!(!responses[0].close, "/2 follows /1");
    assert!(responses[1].close, "nothing follows /2");
    assert_eq!(
        h.half_close_reason(c),
        Some(ebb_core::CloseReason::Stopping)
    );
}

/// Part of a request behind the one answered is a request too: the close
/// waits for it, and it is answered when the rest comes.
#[test]
fn pre_stop_waits_for_a_request_begun_behind_the_one_answered() {
    let (mut h, c) = in_pre_stop();
    let second = get("/2");
    h.send(c, &[&get("/1")[..], &second[..3]].concat());
    h.respond(c, 200, b"1");
    assert!(!h.responses(c)[0].close);
    h.send(c, &second[3..]);
    h.respond(c, 200, b"2");
    assert!(h.responses(c)[1].close);
}

/// Empty lines after a request (some clients send CRLF after a body) are
/// no request: PreStop's response closes, so the client leaves.
#[test]
fn pre_stop_closes_after_a_request_followed_only_by_empty_lines() {
    let (mut h, c) = in_pre_stop();
    h.send(c, &[&get("/1")[..], b"\r\n\r\n"].concat());
    h.respond(c, 200, b"1");
    assert!(h.responses(c)[0].close);
    assert_eq!(
        h.half_close_reason(c),
        Some(ebb_core::CloseReason::Stopping)
    );
}

#[test]
fn an_early_timeout_call_does_not_end_pre_stop() {
    let mut h = Harness::with(Config {
        pre_stop: Duration::from_secs(5),
        ..Config::default()
    });
    h.terminate();
    h.now = Time::from_millis(1_000);
    h.server.handle_timeout(h.now); // spurious: nothing is due
    h.pump();
    assert!(matches!(h.server.phase(), Phase::PreStop { .. }));
    assert!(!h.log.contains(&Event::DrainBacklog));
}

#[test]
fn the_listener_closes_after_the_backlog_is_drained() {
    let mut h = draining();
    let c = h.accept();
    h.send(c, &get("/slow"));
    h.terminate();
    assert!(!h.listener_closed, "not before the backlog is empty");
    let queued: Vec<_> = (0..3).map(|_| h.accept()).collect();
    h.backlog_empty();
    assert!(h.listener_closed);
    assert_eq!(
        h.log.iter().filter(|e| **e == Event::CloseListener).count(),
        1
    );
    assert_eq!(queued.len(), 3);
}

#[test]
fn every_backlog_connection_is_served_with_close() {
    let mut h = draining();
    h.terminate();
    let queued: Vec<_> = (0..20).map(|_| h.accept()).collect();
    h.backlog_empty();
    for &c in &queued {
        h.send(c, &get("/"));
        h.respond(c, 200, b"ok");
        assert!(h.output(c).contains("Connection: close\r\n"));
        h.eof(c);
    }
    let report = h.exit.expect("all served, exit");
    assert_eq!(report.backlog_accepted, 20);
    assert_eq!(report.requests_completed, 20);
}

#[test]
fn a_silent_backlog_connection_is_closed_after_the_first_byte_grace() {
    let mut h = draining();
    h.terminate();
    let c = h.accept();
    h.backlog_empty();
    h.advance_ms(999);
    assert!(!h.closed(c));
    h.advance_ms(1);
    assert!(
        h.closed(c) && !h.half_closed(c),
        "nothing was sent on it: plain close"
    );
    let report = h.exit.expect("exit right after");
    assert_eq!(report.silent_closed, 1);
    assert_eq!(report.exited_at, Time::from_millis(1_000));
}

#[test]
fn the_first_byte_grace_never_runs_past_the_deadline() {
    let mut h = Harness::with(Config {
        drain_timeout: Duration::from_millis(300),
        ..Config::default()
    });
    h.terminate();
    let c = h.accept();
    h.backlog_empty();
    h.advance_ms(300);
    assert!(h.closed(c));
    let report = h.exit.unwrap();
    assert_eq!(report.exited_at, Time::from_millis(300));
    assert_eq!(
        report.silent_closed, 1,
        "closed by its grace, not cut by the deadline"
    );
    assert_eq!(report.forced, None);
}

#[test]
fn a_connection_accepted_before_the_drain_that_sent_nothing_gets_the_grace() {
    let mut h = draining();
    let c = h.accept();
    h.advance_ms(5_000);
    h.terminate();
    h.backlog_empty();
    assert!(!h.closed(c));
    h.send(c, &get("/"));
    h.respond(c, 200, b"x");
    assert!(h.output(c).contains("Connection: close"));
}

#[test]
fn a_quiet_idle_connection_is_closed_cleanly_when_the_drain_starts() {
    let mut h = draining();
    let c = h.accept();
    h.send(c, &get("/"));
    h.respond(c, 200, b"x");
    h.advance_ms(250);
    h.terminate();
    assert!(
        h.half_closed(c) && !h.closed(c),
        "half-close and linger, never a reset"
    );
    h.backlog_empty();
    assert!(!h.exited(), "waits for the client's FIN while lingering");
    h.eof(c);
    let report = h.exit.clone().unwrap();
    assert_eq!(report.idle_closed, 1);
    assert_eq!(report.reset_risk_closes, 0);
}

/// A keep-alive client sends its next request just before the stop, after
/// `idle_close_after` of quiet: the request waits unread in the socket
/// (a driver reads sockets in its own time), and closing the connection
/// at the drain's start would lose it. Core asks first, and serves it.
#[test]
fn a_request_unread_in_a_quiet_connection_when_the_drain_starts_is_answered() {
    let mut h = draining();
    let c = h.accept();
    h.send(c, &get("/1"));
    h.respond(c, 200, b"x");
    h.advance_ms(1_000);
    let unread = get("/2");
    h.unread.insert(c, unread.len());
    h.terminate();
    h.backlog_empty();
    assert!(!h.half_closed(c), "its request waits in the socket");
    assert_eq!(h.server.poll_timeout(), Some(Time::from_millis(31_000)));
    h.advance_ms(29_000);
    assert!(!h.half_closed(c), "no timer but the drain's own");
    h.unread.remove(&c);
    h.send(c, &unread);
    h.respond(c, 200, b"y");
    let responses = h.responses(c);
    assert_eq!(responses.len(), 2);
    assert!(responses[1].close, "the last request sent before the drain");
    h.eof(c);
    let report = h.exit.clone().expect("exit once it is answered");
    assert_eq!(report.idle_closed, 0);
    assert!(!report.lost_work());
}

/// Core decides on a connection quiet past `idle_close_after` at the
/// drain's start only once the driver has said what its socket holds
/// unread: asked first, closed on the answer "nothing".
#[test]
fn a_quiet_connection_closes_on_the_count_of_its_unread_bytes() {
    let mut h = draining();
    let c = h.accept();
    h.send(c, &get("/"));
    h.respond(c, 200, b"x");
    h.advance_ms(1_000);
    h.server.handle_terminate(h.now);
    let events: Vec<Event> = std::iter::from_fn(|| h.server.poll_event()).collect();
    assert_eq!(events, [Event::CountUnread(c), Event::DrainBacklog]);
    h.server.handle_unread(c, 0, h.now);
    h.pump();
    assert_eq!(
        h.half_close_reason(c),
        Some(ebb_core::CloseReason::IdleInDrain)
    );
}

/// Only a connection that may still read a request is asked what waits in
/// its socket: not one lingering (what comes is discarded), nor one whose
/// client sent its FIN (everything before it was read).
#[test]
fn the_drain_asks_no_count_of_a_connection_that_reads_no_more_requests() {
    let mut h = draining();
    let lingering = h.accept();
    h.send(lingering, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n{\r\n\r\n");
    h.respond(lingering, 200, b"x");
    assert!(
        h.half_closed(lingering),
        "a 400 for the garbage, then linger"
    );
    let finished = h.accept();
    h.send(finished, &get("/"));
    h.eof(finished);
    let open = h.accept();
    h.send(open, &get("/"));
    h.server.handle_terminate(h.now);
    let events: Vec<Event> = std::iter::from_fn(|| h.server.poll_event()).collect();
    assert_eq!(events, [Event::CountUnread(open), Event::DrainBacklog]);
}

#[test]
fn a_recently_busy_connection_gets_the_rest_of_its_quiet_window() {
    let mut h = draining();
    let c = h.accept();
    h.send(c, &get("/"));
    h.respond(c, 200, b"x");
    h.advance_ms(100);
    h.terminate();
    h.backlog_empty();
    assert!(!h.half_closed(c));
    h.advance_ms(149);
    assert!(!h.half_closed(c));
    h.advance_ms(1);
    assert!(h.half_closed(c), "closed once quiet for 250 ms");
    assert_eq!(
        h.server.poll_timeout(),
        Some(Time::from_millis(2_250)),
        "linger deadline"
    );
}

#[test]
fn a_request_inside_the_quiet_window_is_served_with_close() {
    let mut h = draining();
    let c = h.accept();
    h.send(c, &get("/1"));
    h.respond(c, 200, b"x");
    h.terminate();
    h.backlog_empty();
    h.advance_ms(100);
    h.send(c, &get("/2"));
    assert_eq!(h.pending.len(), 1, "served, not dropped");
    h.respond(c, 200, b"y");
    let responses = h.responses(c);
    assert!(responses[1].close);
    assert!(h.half_closed(c));
}

#[test]
fn requests_received_before_the_drain_are_answered_in_order() {
    let mut h = draining();
    let c = h.accept();
    let mut batch = get("/1");
    batch.extend(get("/2"));
    batch.extend(get("/3"));
    h.send(c, &batch);
    h.terminate();
    h.backlog_empty();
    for _ in 0..3 {
        h.respond(c, 200, b"x");
    }
    let responses = h.responses(c);
    assert_eq!(responses.len(), 3);
    assert!(!responses[0].close && !responses[1].close);
    assert!(responses[2].close, "the last one closes");
}

/// The driver says how much waits unread in a socket (`FIONREAD`) when core
/// asks: here requests pipelined behind /1 that reading had paused for.
#[test]
fn requests_still_in_the_socket_when_the_drain_began_are_answered_too() {
    let mut h = Harness::with(Config {
        max_pipelined_bytes: 64,
        ..Config::default()
    });
    let c = h.accept();
    h.send(c, &get("/1"));
    let unread = [get("/2"), get("/3")].concat();
    h.unread.insert(c, unread.len());
    h.terminate();
    assert!(h.log.contains(&Event::CountUnread(c)), "core asks");
    h.unread.remove(&c);
    h.backlog_empty();
    h.respond(c, 200, b"x");
    assert!(!h.responses(c)[0].close, "/2 and /3 are owed");
    h.send(c, &unread);
    h.respond(c, 200, b"x");
    h.respond(c, 200, b"x");
    let responses = h.responses(c);
    assert_eq!(responses.len(), 3);
    assert!(!responses[1].close);
    assert!(
        responses[2].close,
        "the last request sent before the drain closes"
    );
}

#[test]
fn what_a_backlog_connection_sent_before_its_accept_is_answered_whole() {
    let mut h = draining();
    h.terminate();
    let batch = [get("/1"), get("/2")].concat();
    let c = h.accept_holding(batch.len());
    assert!(
        h.log.contains(&Event::CountUnread(c)),
        "core asks at accept"
    );
    h.unread.remove(&c);
    h.send(c, &batch);
    h.respond(c, 200, b"x");
    h.respond(c, 200, b"x");
    let responses = h.responses(c);
    assert_eq!(responses.len(), 2);
    assert!(!responses[0].close && responses[1].close);
}

#[test]
fn nothing_is_dispatched_after_the_close_response() {
    let mut h = draining();
    let c = h.accept();
    h.send(c, &get("/1"));
    h.terminate();
    h.backlog_empty();
    h.send(c, &get("/2")); // arrives after the drain began, behind /1
    h.respond(c, 200, b"x");
    assert!(h.responses(c)[0].close);
    assert!(
        h.pending.is_empty(),
        "/2 is never handed over, so the client may retry it"
    );
    assert_eq!(
        h.log
            .iter()
            .filter(|e| matches!(e, Event::Request(_)))
            .count(),
        1
    );
}

#[test]
fn exit_comes_from_the_input_that_ends_the_last_request() {
    let mut h = draining();
    let c = h.accept();
    h.send(c, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    h.terminate();
    h.backlog_empty();
    h.now = Time::from_millis(1_234);
    assert!(!h.exited());
    h.respond(c, 200, b"done");
    let report = h.exit.expect("exit with the response, not at a later tick");
    assert_eq!(report.exited_at, Time::from_millis(1_234));
    assert_eq!(*h.log.last().unwrap(), Event::Exit);
    assert_eq!(h.server.exit_report(), Some(&report));
}

#[test]
fn exit_follows_the_fin_of_a_keep_alive_client_at_once() {
    let mut h = draining();
    let c = h.accept();
    h.send(c, &get("/"));
    h.terminate();
    h.backlog_empty();
    h.advance_ms(400);
    h.respond(c, 200, b"x");
    assert!(h.half_closed(c) && !h.exited());
    h.advance_ms(7);
    h.eof(c);
    assert_eq!(h.exit.unwrap().exited_at, Time::from_millis(407));
}

#[test]
fn an_over_long_request_is_cut_at_the_deadline_and_exit_happens_then() {
    let mut h = Harness::with(Config {
        drain_timeout: Duration::from_secs(2),
        ..Config::default()
    });
    let c = h.accept();
    h.send(c, &get("/sleep?ms=60000"));
    h.advance_ms(500);
    h.terminate();
    h.backlog_empty();
    h.advance_ms(1_999);
    assert!(!h.exited());
    h.advance_ms(1);
    let report = h.exit.clone().unwrap();
    assert_eq!(report.exited_at, Time::from_millis(2_500));
    assert_eq!(report.forced, Some(Forced::Deadline));
    assert_eq!(report.requests_cut, 1);
    assert!(h.closed(c));
    let late = h.pending[0];
    let none = std::iter::empty::<(&str, &str)>();
    assert!(h
        .server
        .handle_response(late, 200, none, ebb_core::Bytes::new(), h.now)
        .is_err());
}

#[test]
fn idle_keepalive_connections_do_not_delay_exit() {
    let mut h = draining();
    let conns: Vec<_> = (0..50).map(|_| h.accept()).collect();
    for &c in &conns {
        h.send(c, &get("/"));
        h.respond(c, 200, b"x");
    }
    h.advance_ms(1_000);
    h.terminate();
    h.backlog_empty();
    assert!(conns.iter().all(|&c| h.half_closed(c)));
    for &c in &conns {
        h.eof(c);
    }
    let report = h.exit.clone().unwrap();
    assert_eq!(report.idle_closed, 50);
    assert_eq!(report.total(), Duration::ZERO);
}

#[test]
fn a_second_terminate_exits_at_once() {
    let mut h = draining();
    let c = h.accept();
    h.send(c, &get("/"));
    h.terminate();
    h.terminate();
    let report = h.exit.clone().unwrap();
    assert_eq!(report.forced, Some(Forced::SecondTerminate));
    assert_eq!(report.requests_cut, 1);
    assert!(h.closed(c) && h.listener_closed);
    assert_eq!(h.server.phase(), Phase::Exited);
}

#[test]
fn the_drain_report_counts_are_exact() {
    let mut h = Harness::with(Config {
        drain_timeout: Duration::from_secs(10),
        ..Config::default()
    });
    // Two idle connections, one quiet and one recently busy.
    let quiet = h.accept();
    h.send(quiet, &get("/"));
    h.respond(quiet, 200, b"x");
    h.advance_ms(1_000);
    let busy = h.accept();
    h.send(busy, &get("/"));
    h.respond(busy, 200, b"x");
    // One in flight that completes, one that will be cut.
    let done = h.accept();
    h.send(done, &get("/done"));
    let cut = h.accept();
    h.send(cut, &get("/forever"));
    h.terminate();
    // Backlog: one that sends a request, one silent.
    let fresh = h.accept();
    let silent = h.accept();
    h.backlog_empty();
    h.send(fresh, &get("/"));
    h.respond(fresh, 200, b"x");
    h.respond(done, 200, b"x");
    h.eof(quiet);
    h.eof(fresh);
    h.eof(done);
    h.advance_ms(300); // busy's window ends; the silent one is still in its grace
    h.eof(busy);
    h.advance(Duration::from_secs(10));
    let report = h.exit.clone().unwrap();
    assert!(h.closed(silent) && h.closed(cut));
    assert_eq!(report.backlog_accepted, 2);
    assert_eq!(report.silent_closed, 1);
    assert_eq!(report.idle_closed, 2);
    assert_eq!(report.requests_completed, 2);
    assert_eq!(report.requests_cut, 1);
    assert_eq!(
        report.reset_risk_closes, 0,
        "the cut connection had sent nothing"
    );
    assert_eq!(report.forced, Some(Forced::Deadline));
    assert_eq!(report.total(), Duration::from_secs(10));
    assert_eq!(report.listener_closed_at, Some(report.terminated_at));
    let line = report.to_string();
    assert!(
        line.starts_with("drain forced by deadline in 10000ms"),
        "{line}"
    );
}

#[test]
fn a_paused_connection_reads_again_once_it_is_closing() {
    let mut h = Harness::with(Config {
        max_pipelined_bytes: 64,
        ..Config::default()
    });
    let c = h.accept();
    h.send(c, &get("/1"));
    h.terminate();
    h.backlog_empty();
    h.send(c, &[b'x'; 200]); // arrives after the drain began, behind /1
    assert!(!h.server.wants_read(c), "paused behind /1");
    h.respond(c, 200, b"x");
    assert!(h.half_closed(c));
    assert!(h.server.wants_read(c), "lingering reads until the FIN");
    assert!(h.log.contains(&Event::ResumeRead(c)), "and says so");
    h.eof(c);
    assert!(h.exited());
}

#[test]
fn a_deadline_that_cuts_a_response_mid_write_counts_a_reset_risk() {
    let mut h = Harness::with(Config {
        drain_timeout: Duration::from_secs(1),
        ..Config::default()
    });
    h.auto_write = false;
    let c = h.accept();
    h.send(c, &get("/big"));
    h.respond(c, 200, b"a response the client reads slowly");
    h.write(c, 10);
    h.terminate();
    h.backlog_empty();
    h.advance_ms(1_000);
    let report = h.exit.unwrap();
    assert_eq!(report.requests_cut, 1);
    assert_eq!(report.reset_risk_closes, 1);
    assert_eq!(report.forced, Some(Forced::Deadline));
}

#[test]
fn a_client_that_never_sends_fin_is_closed_at_the_linger_deadline_as_a_risk() {
    let mut h = draining();
    let c = h.accept();
    h.send(c, &get("/"));
    h.respond(c, 200, b"x");
    h.advance_ms(1_000);
    h.terminate();
    h.backlog_empty();
    assert!(h.half_closed(c));
    h.advance_ms(1_999);
    assert!(!h.exited(), "lingering holds the exit");
    h.advance_ms(1);
    let report = h.exit.clone().unwrap();
    assert!(h.closed(c));
    assert_eq!(report.reset_risk_closes, 1);
    assert_eq!(report.idle_closed, 1);
    assert_eq!(report.total(), Duration::from_secs(2));
}

/// Connection `c` was cut by the drain deadline, its farewell 503 coming
/// before the close.
fn assert_cut_with_farewell(h: &Harness, c: ConnId) {
    let farewell = h.log.iter().position(
        |e| matches!(e, Event::Farewell(id, b) if *id == c && b.starts_with(b"HTTP/1.1 503 ")),
    );
    let close = h
        .log
        .iter()
        .position(|e| matches!(e, Event::Close(id, _) if *id == c));
    assert!(
        farewell.is_some() && farewell < close,
        "the 503 comes before the close: {:?}",
        h.log
    );
    assert_eq!(h.close_reason(c), Some(ebb_core::CloseReason::DeadlineCut));
}

/// A head whose own timeout falls due at the very instant of the drain
/// deadline: a 408 queued then would be cut unwritten, so the deadline's
/// farewell 503 answers it instead.
#[test]
fn a_head_timing_out_at_the_deadline_hears_the_farewell() {
    let mut h = Harness::with(Config {
        drain_timeout: Duration::from_secs(5),
        header_read_timeout: Duration::from_secs(5),
        ..Config::default()
    });
    let c = h.accept();
    h.send(c, b"G");
    h.terminate();
    h.backlog_empty();
    h.advance(Duration::from_secs(5));
    assert_cut_with_farewell(&h, c);
}

#[test]
fn an_upload_cut_while_arriving_hears_503_and_counts_as_cut_with_reset_risk() {
    let mut h = Harness::with(Config {
        drain_timeout: Duration::from_secs(1),
        ..Config::default()
    });
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n12",
    );
    h.terminate();
    h.backlog_empty();
    h.advance(Duration::from_secs(1));
    assert_cut_with_farewell(&h, c);
    let report = h.exit.unwrap();
    assert_eq!((report.requests_cut, report.reset_risk_closes), (1, 1));
}

#[test]
fn a_request_the_application_has_gets_no_farewell_when_cut() {
    let mut h = Harness::with(Config {
        drain_timeout: Duration::from_secs(1),
        ..Config::default()
    });
    let c = h.accept();
    h.send(c, &get("/slow"));
    h.terminate();
    h.backlog_empty();
    h.advance(Duration::from_secs(1));
    assert!(!h.log.iter().any(|e| matches!(e, Event::Farewell(..))));
    assert_eq!(h.exit.unwrap().requests_cut, 1);
}

#[test]
fn a_rejection_in_the_drain_counts_as_rejected_not_completed() {
    let mut h = draining();
    let c = h.accept();
    h.send(c, b"GET / HTTP/1.1\r\n");
    h.terminate();
    h.backlog_empty();
    h.advance(Duration::from_secs(5));
    h.eof(c);
    let report = h.exit.expect("exit after the 408");
    assert_eq!(
        (report.requests_completed, report.requests_rejected),
        (0, 1)
    );
}

#[test]
fn a_hand_off_closes_the_listener_at_once_and_leaves_the_backlog() {
    let mut h = Harness::with(Config {
        pre_stop: Duration::from_secs(5),
        ..Config::default()
    });
    let c = h.accept();
    h.send(c, &get("/"));
    h.server.handle_handoff(h.now);
    h.pump();
    assert!(h.listener_closed, "the listener closes without draining");
    assert!(!h.log.contains(&Event::DrainBacklog));
    assert!(
        matches!(h.server.phase(), Phase::Draining { .. }),
        "no pre-stop"
    );
    h.respond(c, 200, b"ok");
    assert!(h.output(c).contains("Connection: close"));
    h.eof(c);
    let report = h.exit.expect("exit once its own connections are done");
    assert!(report.handed_off);
    assert_eq!((report.backlog_accepted, report.requests_completed), (0, 1));
    assert_eq!(report.listener_closed_at, Some(Time::ZERO));
}

#[test]
fn a_hand_off_during_the_drain_closes_the_listener_now() {
    let mut h = draining();
    h.terminate();
    assert!(!h.listener_closed);
    h.server.handle_handoff(h.now);
    h.pump();
    assert!(h.listener_closed && h.exited());
    assert!(h.exit.unwrap().handed_off);
}
