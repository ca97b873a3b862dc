//! One keep-alive cycle through core — bytes in, request event, response,
//! bytes out, written — for a realistic browser request, and 16-deep
//! pipelined batches of it and of the short request wrk sends in the peer
//! benchmark. No sockets: this is core's own cost per request.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ebb_core::{Bytes, Config, ConnId, Event, Server, Time};

/// A ~300-byte request as a browser sends it.
const BROWSER_REQUEST: &[u8] = b"GET /assets/app.js?v=3 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://www.example.com/\r\n\
Connection: keep-alive\r\n\
Sec-Fetch-Dest: script\r\n\r\n";

/// The request `bench/pipeline.lua` has wrk send, 16 to a write, in the
/// peer benchmark's pipelined run.
const WRK_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

const HEADERS: [(&str, &str); 1] = [("Content-Type", "text/plain")];

/// Answers every request core has dispatched and writes everything it
/// transmits. The hot loop is written by hand rather than with
/// `ebb_testkit::harness::Harness`, which logs every event, copies every byte
/// written and checks the invariants (a recount of the table) after each
/// event: that would be most of what this measures.
fn answer_and_write(server: &mut Server, now: Time) -> usize {
    let mut answered = 0;
    while let Some(event) = server.poll_event() {
        match event {
            Event::Request(id) => {
                server
                    .handle_response(id, 200, HEADERS, Bytes::from_static(b"Hello, World!"), now)
                    .unwrap();
                answered += 1;
            }
            Event::Transmit(conn) => {
                let n: usize = server.transmit(conn).iter().map(|s| s.len()).sum();
                server.handle_sent(conn, n, now);
            }
            _ => {}
        }
    }
    answered
}

fn warm(server: &mut Server) -> ConnId {
    let conn = server.handle_accept(Time::ZERO);
    for _ in 0..16 {
        server.handle_recv(conn, BROWSER_REQUEST, Time::ZERO);
        answer_and_write(server, Time::ZERO);
    }
    conn
}

fn keep_alive_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(1));
    group.bench_function("keep_alive_cycle", |b| {
        let mut server = Server::new(Config::default());
        let conn = warm(&mut server);
        b.iter(|| {
            server.handle_recv(conn, std::hint::black_box(BROWSER_REQUEST), Time::ZERO);
            assert_eq!(answer_and_write(&mut server, Time::ZERO), 1);
        });
    });

    group.throughput(Throughput::Elements(16));
    for (name, request) in [
        ("pipelined_16", BROWSER_REQUEST),
        ("pipelined_16_wrk", WRK_REQUEST),
    ] {
        let batch: Vec<u8> = request.repeat(16);
        group.bench_function(name, |b| {
            let mut server = Server::new(Config::default());
            let conn = warm(&mut server);
            b.iter_batched_ref(
                || (),
                |_| {
                    server.handle_recv(conn, std::hint::black_box(&batch), Time::ZERO);
                    assert_eq!(answer_and_write(&mut server, Time::ZERO), 16);
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, keep_alive_cycle);
criterion_main!(benches);
