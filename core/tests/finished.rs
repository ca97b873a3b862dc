//! One `Finished` per request core began, saying how it ended: the raw
//! material of access logs and metrics.

use std::time::Duration;

use ebb_core::{CloseReason, Config, Event, Finished, Outcome, Reject, Time};
use ebb_testkit::harness::{get, Harness};

fn finished(h: &Harness) -> Vec<Finished> {
    h.log
        .iter()
        .filter_map(|e| match e {
            Event::Finished(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_keep_alive_request_finishes_complete_and_keeps_the_connection() {
    let mut h = Harness::new();
    let c = h.accept();
    h.advance_ms(10);
    h.send(c, &get("/a"));
    h.advance_ms(5);
    h.respond(c, 200, b"hello");
    let [f] = &finished(&h)[..] else {
        panic!("one Finished expected: {:?}", h.log)
    };
    assert_eq!(f.conn, c);
    assert_eq!(f.request.map(|r| (r.conn(), r.seq())), Some((c, 0)));
    assert_eq!((f.status, f.body_bytes), (Some(200), 5));
    assert_eq!(f.outcome, Outcome::Complete);
    assert_eq!(f.began_at, Time::from_millis(10));
    assert_eq!(f.responded_at, Some(Time::from_millis(15)));
    assert_eq!(f.finished_at, Time::from_millis(15));
    assert!(f.keeps_connection);
}

#[test]
fn a_request_asking_to_close_finishes_complete_without_the_connection() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    h.respond(c, 200, b"bye");
    let f = finished(&h);
    assert_eq!(
        f.len(),
        1,
        "the close after the response adds no second one"
    );
    assert_eq!(f[0].outcome, Outcome::Complete);
    assert!(!f[0].keeps_connection);
    assert_eq!(h.close_reason(c), Some(CloseReason::ClientAsked));
}

#[test]
fn a_head_response_counts_no_body_bytes() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    h.respond(c, 200, b"hello");
    assert_eq!(finished(&h)[0].body_bytes, 0);
}

#[test]
fn an_error_response_finishes_rejected_with_no_request_id() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n");
    let f = finished(&h);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].status, Some(400));
    assert!(matches!(
        f[0].outcome,
        Outcome::Rejected(Reject::Malformed(_))
    ));
    assert_eq!(f[0].request, None);
    assert!(!f[0].keeps_connection);
}

#[test]
fn a_slow_head_finishes_rejected_by_its_timeout() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, b"GET / HTTP/1.1\r\n");
    h.advance(Duration::from_secs(6));
    let f = finished(&h);
    assert_eq!(f[0].outcome, Outcome::Rejected(Reject::HeadTimeout));
    assert_eq!(f[0].status, Some(408));
    assert_eq!(
        h.half_close_reason(c),
        Some(CloseReason::Rejected(Reject::HeadTimeout))
    );
}

#[test]
fn an_application_fault_finishes_as_such_with_core_s_500() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(c, &get("/"));
    let id = h.pending.remove(0);
    h.server.handle_app_failure(id, h.now);
    h.pump();
    let f = finished(&h);
    assert_eq!((f[0].outcome, f[0].status), (Outcome::AppFault, Some(500)));
    assert!(f[0].keeps_connection);
}

#[test]
fn a_client_gone_mid_body_finishes_unfinished_without_a_status() {
    let mut h = Harness::new();
    let c = h.accept();
    h.send(
        c,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12",
    );
    h.abort(c);
    let f = finished(&h);
    assert_eq!(f[0].outcome, Outcome::Unfinished(CloseReason::Aborted));
    assert_eq!((f[0].status, f[0].request), (None, None));
    assert_eq!(f[0].outcome.label(), "client-gone");
}

#[test]
fn requests_cut_at_the_deadline_finish_as_cut_and_match_the_report() {
    let mut h = Harness::with(Config {
        drain_timeout: Duration::from_secs(1),
        ..Config::default()
    });
    let a = h.accept();
    let b = h.accept();
    h.send(a, &get("/slow"));
    h.send(
        b,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12",
    );
    h.terminate();
    h.backlog_empty();
    h.advance(Duration::from_secs(1));
    let report = h.exit.clone().expect("exit at the deadline");
    let cut: Vec<_> = finished(&h)
        .into_iter()
        .filter(|f| f.outcome.label() == "cut")
        .collect();
    assert_eq!(cut.len() as u64, report.requests_cut);
    assert_eq!(cut.len(), 2);
    // The one still arriving was answered with the farewell 503 on the way
    // out, and says so; the one the application had was not answered.
    let answers: Vec<_> = cut
        .iter()
        .map(|f| (f.request.is_some(), f.status, f.body_bytes, f.responded_at))
        .collect();
    let at = Some(h.now);
    assert!(
        answers.contains(&(true, None, 0, None)),
        "the dispatched one: {answers:?}"
    );
    assert!(
        answers.contains(&(false, Some(503), 34, at)),
        "the one still arriving: {answers:?}"
    );
}
