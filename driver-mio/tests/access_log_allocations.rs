//! The access log allocates nothing per request: on a warm keep-alive
//! connection, the worker thread allocates as often per request with the log
//! on as with it off. Counted by this test binary's global allocator, per
//! thread, and read on the worker thread by an observer that allocates
//! nothing itself.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ebb_mio::{Observation, Response};
use log::{Log, Metadata, Record};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // Not during the thread's teardown, when the counter may be gone.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A logger that takes every record and keeps none: what is counted is
/// ebb's side of logging, not a logger's.
struct Discard;

impl Log for Discard {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        std::hint::black_box(record.args());
    }

    fn flush(&self) {}
}

const REQUESTS: usize = 400;
/// Requests before the buffers have grown to fit.
const WARM_UP: usize = 50;

/// The worker thread's allocations during each request after the warm-up,
/// with the access log on or off, `REQUESTS` on one keep-alive connection.
fn allocations_per_request(access_log: bool) -> Vec<u64> {
    let counts = Arc::new(Mutex::new(Vec::with_capacity(REQUESTS + 8)));
    let sink = counts.clone();
    let (builder, addr) = common::on_loopback(1);
    let builder = builder.access_log(access_log).observe(move |observation| {
        if let Observation::Request(_) = observation {
            let allocations = ALLOCATIONS.with(Cell::get);
            sink.lock().unwrap().push(allocations);
        }
    });
    let shutdown = builder.shutdown_handle();
    let server = std::thread::spawn(move || {
        builder.serve(|_req, res| res.respond(Response::text(200, "ok")))
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Every response has the same length (the `Date` value's is fixed).
    let response_bytes = {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut response = Vec::new();
        let mut buf = [0; 1024];
        while !response.ends_with(b"\r\n\r\nok") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {response:?}");
            response.extend_from_slice(&buf[..n]);
        }
        response.len()
    };
    for _ in 1..REQUESTS {
        stream
            .write_all(b"GET /a/longer/target?with=query HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut response = vec![0; response_bytes];
        stream.read_exact(&mut response).unwrap();
    }
    drop(stream);
    shutdown.shutdown();
    server.join().unwrap().unwrap();
    let counts = counts.lock().unwrap();
    assert_eq!(counts.len(), REQUESTS);
    counts[WARM_UP..].windows(2).map(|w| w[1] - w[0]).collect()
}

/// The most common value of `counts`, and how many exceed it.
fn usual(counts: &[u64]) -> (u64, usize) {
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    let mode = sorted
        .chunk_by(|a, b| a == b)
        .max_by_key(|run| run.len())
        .map_or(0, |run| run[0]);
    (mode, counts.iter().filter(|&&n| n > mode).count())
}

#[test]
fn access_log_allocates_nothing_per_request() {
    log::set_logger(&Discard).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    let off = allocations_per_request(false);
    let on = allocations_per_request(true);
    let ((usual_off, _), (usual_on, more_on)) = (usual(&off), usual(&on));
    assert_eq!(usual_on, usual_off, "off: {off:?}\non: {on:?}");
    // The `Date` value is made anew once a second, in either run.
    assert!(more_on <= 5, "off: {off:?}\non: {on:?}");
}
