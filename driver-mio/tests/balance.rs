//! Workers sharing one listener spread a burst of connections among them,
//! instead of the first to wake taking it all.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ebb_mio::{Observation, Request, Responder, Response};

const CONNECTIONS: usize = 40;

fn app(_req: &Request<'_>, res: Responder) {
    res.respond(Response::text(200, "ok"));
}

#[test]
fn a_burst_of_connections_is_spread_over_the_workers() {
    let (builder, addr) = common::on_loopback(2);
    let served = Arc::new(Mutex::new([0usize; 2]));
    let sink = served.clone();
    let builder = builder.observe(move |observation| {
        if let Observation::Request(end) = *observation {
            sink.lock().unwrap()[end.worker] += 1;
        }
    });
    let shutdown = builder.shutdown_handle();
    let server = std::thread::spawn(move || builder.serve(app));

    // All open at once, as a load balancer's pool or a benchmark opens them.
    let mut streams: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    for stream in &mut streams {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    for stream in &mut streams {
        let mut answer = Vec::new();
        let mut buf = [0; 1024];
        while !answer.ends_with(b"ok") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed before the answer");
            answer.extend_from_slice(&buf[..n]);
        }
    }
    drop(streams);
    shutdown.shutdown();
    server.join().unwrap().unwrap();

    // A worker leaves the backlog to the other once it holds 2 more; only a
    // nudged worker that does not wake within 10 ms lets the first take
    // more. Either way, neither may be left with a quarter or less.
    let served = *served.lock().unwrap();
    assert_eq!(served.iter().sum::<usize>(), CONNECTIONS);
    assert!(
        served.iter().all(|&n| n > CONNECTIONS / 4),
        "requests served by each worker: {served:?}"
    );
}
