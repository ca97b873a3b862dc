//! Properties over generated input: split-invariance, serialise → parse round
//! trips, arbitrary bytes, pipelining, and an active count that never leaks
//! however a connection ends.

use ebb_core::{ConnId, Event};
use ebb_testkit::harness::Harness;
use proptest::prelude::*;

/// A valid request, as generated.
#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: Option<Vec<usize>>,
}

impl Req {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: example.com\r\n",
            self.method, self.target
        )
        .into_bytes();
        for (n, v) in &self.headers {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        match &self.chunked {
            None if !self.body.is_empty() => {
                out.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes(),
                );
                out.extend_from_slice(&self.body);
            }
            None => out.extend_from_slice(b"\r\n"),
            Some(cuts) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &self.body[..];
                for &cut in cuts {
                    let n = cut.min(rest.len());
                    if n == 0 {
                        continue;
                    }
                    out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                    out.extend_from_slice(&rest[..n]);
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                }
                if !rest.is_empty() {
                    out.extend_from_slice(format!("{:X};ext=v\r\n", rest.len()).as_bytes());
                    out.extend_from_slice(rest);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
        }
        out
    }
}

fn request() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        "/[a-zA-Z0-9/._~-]{0,40}(\\?[a-z0-9=&]{0,20})?",
        prop::collection::vec(
            ("X-[A-Za-z0-9-]{1,12}", "[ -~&&[^ ]]([ -~]{0,30}[!-~])?"),
            0..8,
        ),
        prop::collection::vec(any::<u8>(), 0..600),
        prop::option::of(prop::collection::vec(1usize..200, 0..6)),
    )
        .prop_map(|(method, target, headers, body, chunked)| Req {
            method,
            target,
            headers,
            body,
            chunked,
        })
}

/// What the application saw of a request.
#[derive(Debug, PartialEq)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// Feeds `bytes` to one connection in pieces ending at `cuts`, answering each
/// request as it comes; returns what the application saw.
fn serve(bytes: &[u8], cuts: &[usize]) -> (Vec<Seen>, Harness, ConnId) {
    let mut h = Harness::new();
    let c = h.accept();
    let mut seen = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|&p| p % (bytes.len() + 1)).collect();
    points.push(bytes.len());
    points.sort_unstable();
    let mut from = 0;
    for to in points {
        h.send(c, &bytes[from..to]);
        from = to;
        while let Some(&id) = h.pending.first() {
            let req = h.server.request(id).unwrap();
            seen.push(Seen {
                method: req.method().to_owned(),
                target: req.target().to_owned(),
                headers: req
                    .headers()
                    .map(|(n, v)| (n.to_owned(), v.to_vec()))
                    .collect(),
                body: req.body().to_vec(),
            });
            h.respond(c, 200, b"ok");
        }
    }
    (seen, h, c)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_request_split_anywhere_is_the_same_request(req in request(), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        let bytes = req.to_bytes();
        let (whole, _, _) = serve(&bytes, &[]);
        let (split, _, _) = serve(&bytes, &cuts);
        prop_assert_eq!(whole.len(), 1);
        prop_assert_eq!(&whole, &split);
    }

    #[test]
    fn serialised_requests_parse_back_to_what_was_generated(req in request()) {
        let (seen, _, _) = serve(&req.to_bytes(), &[]);
        prop_assert_eq!(seen.len(), 1);
        let seen = &seen[0];
        prop_assert_eq!(seen.method.as_str(), req.method);
        prop_assert_eq!(&seen.target, &req.target);
        prop_assert_eq!(&seen.body, &req.body);
        for (n, v) in &req.headers {
            prop_assert!(seen.headers.iter().any(|(sn, sv)| sn == n && sv == v.as_bytes()), "missing {}", n);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_end_incomplete_or_in_an_error_with_close(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let (_, h, c) = serve(&bytes, &cuts);
        for response in h.responses(c) {
            let status = response.status;
            if status != 200 {
                prop_assert!((400..600).contains(&status), "{:?}", response);
                prop_assert!(response.close);
                prop_assert!(h.half_closed(c) || h.closed(c));
            }
        }
        prop_assert_eq!(h.server.active_requests(), h.server.recount_active_requests());
    }

    #[test]
    fn pipelined_requests_get_responses_in_order(reqs in prop::collection::vec(request(), 1..10)) {
        let mut bytes = Vec::new();
        for r in &reqs {
            bytes.extend(r.to_bytes());
        }
        let (seen, h, c) = serve(&bytes, &[]);
        prop_assert_eq!(seen.len(), reqs.len());
        for (s, r) in seen.iter().zip(&reqs) {
            prop_assert_eq!(&s.target, &r.target);
        }
        prop_assert_eq!(h.responses(c).len(), reqs.len());
    }
}

/// How a connection ends, for the leak test.
#[derive(Copy, Clone, Debug)]
enum Ending {
    Abort,
    Eof,
}

fn end(h: &mut Harness, c: ConnId, how: Ending) {
    match how {
        Ending::Abort => h.abort(c),
        Ending::Eof => h.eof(c),
    }
}

/// The count returns to zero after every way a connection can end, at every
/// byte of the request and during the response, in Serving and in Draining;
/// when draining, exit follows at once.
#[test]
fn the_active_count_never_leaks() {
    let requests: [&[u8]; 2] = [
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    for request in requests {
        for draining in [false, true] {
            for how in [Ending::Abort, Ending::Eof] {
                let check = |h: &Harness, what: &str| {
                    assert_eq!(
                        h.server.active_requests(),
                        0,
                        "{what} ({how:?}, draining {draining})"
                    );
                    assert_eq!(h.server.recount_active_requests(), 0);
                    if draining {
                        assert!(h.exited(), "exit at once after {what} ({how:?})");
                    }
                };
                let start = |h: &mut Harness| {
                    let c = h.accept();
                    if draining {
                        h.terminate();
                        h.backlog_empty();
                    }
                    c
                };
                // After every byte count of head and body.
                for k in 0..request.len() {
                    let mut h = Harness::new();
                    let c = start(&mut h);
                    h.send(c, &request[..k]);
                    end(&mut h, c, how);
                    check(&h, &format!("after {k} bytes"));
                    assert!(h.pending.is_empty());
                }
                // After dispatch, before the response.
                let mut h = Harness::new();
                let c = start(&mut h);
                h.send(c, request);
                assert_eq!(h.pending.len(), 1);
                match how {
                    Ending::Abort => h.abort(c),
                    // A half-close after a full request: still answered, then closed.
                    Ending::Eof => {
                        h.eof(c);
                        assert_eq!(h.server.active_requests(), 1);
                        h.respond(c, 200, b"ok");
                    }
                }
                check(&h, "after dispatch");
                // During the write of the response.
                let mut h = Harness::new();
                h.auto_write = false;
                let c = start(&mut h);
                h.send(c, request);
                h.respond(c, 200, b"a response body");
                let total: usize = h.server.transmit(c).iter().map(|s| s.len()).sum();
                for sent in [1, total / 2, total - 1] {
                    let mut h2 = Harness::new();
                    h2.auto_write = false;
                    let c2 = start(&mut h2);
                    h2.send(c2, request);
                    h2.respond(c2, 200, b"a response body");
                    h2.write(c2, sent);
                    match how {
                        Ending::Abort => h2.abort(c2),
                        Ending::Eof => {
                            h2.eof(c2);
                            h2.write(c2, total);
                        }
                    }
                    check(&h2, &format!("after writing {sent} of {total}"));
                }
                if !draining {
                    let exited = h.log.iter().any(|e| matches!(e, Event::Exit));
                    assert!(!exited, "no exit without terminate ({how:?})");
                }
            }
        }
    }
}
