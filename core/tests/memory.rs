//! Idle keep-alive connections hold no heap buffers: 10,000 of them, each
//! having completed one request, cost core less than 4 MiB in all. And in steady state neither a
//! keep-alive cycle nor a batch of pipelined requests allocates.
//!
//! Its own test binary, because it installs a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ebb_core::{Bytes, Config, Event, Server, Time};

/// Counts only what each test's own thread allocates, in counters of that
/// thread: the tests run side by side, and the harness's other threads
/// allocate too, at times of their own.
struct Counting;

thread_local! {
    static TRACKED: Cell<bool> = const { Cell::new(false) };
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn tracked() -> bool {
    TRACKED.try_with(Cell::get).unwrap_or(false)
}

/// Adds to a counter of this thread.
fn count<T: Copy + std::ops::Add<Output = T>>(
    counter: &'static std::thread::LocalKey<Cell<T>>,
    by: T,
) {
    counter.with(|c| c.set(c.get() + by));
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn live_bytes() -> isize {
    LIVE_BYTES.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if tracked() {
            count(&LIVE_BYTES, layout.size() as isize);
            count(&ALLOCATIONS, 1);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if tracked() {
            count(&LIVE_BYTES, -(layout.size() as isize));
        }
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if tracked() {
            let grown = new_size as isize - layout.size() as isize;
            count(&LIVE_BYTES, grown);
            count(&ALLOCATIONS, 1);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REQUEST: &[u8] =
    b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n";

/// Runs one request through `conn` to completion. Driven by hand rather than
/// through `ebb_testkit::harness::Harness`: the harness records every event
/// and every byte written, which are exactly the allocations and the memory
/// this test must not count.
fn cycle(server: &mut Server, conn: ebb_core::ConnId, now: Time) {
    server.handle_recv(conn, REQUEST, now);
    let mut request = None;
    while let Some(event) = server.poll_event() {
        if let Event::Request(id) = event {
            request = Some(id);
        }
    }
    let id = request.expect("request dispatched");
    answer(server, id, now);
    write_all(server, now);
}

/// Answers request `id` with the demo's `Hello, World!`.
fn answer(server: &mut Server, id: ebb_core::RequestId, now: Time) {
    server
        .handle_response(
            id,
            200,
            [("Content-Type", "text/plain")],
            Bytes::from_static(b"Hello, World!"),
            now,
        )
        .unwrap();
}

/// Writes everything core transmits, whole, until it has no more events.
fn write_all(server: &mut Server, now: Time) {
    while let Some(event) = server.poll_event() {
        if let Event::Transmit(c) = event {
            let n: usize = server.transmit(c).iter().map(|s| s.len()).sum();
            server.handle_sent(c, n, now);
        }
    }
}

/// Runs a batch of pipelined requests, received in one read, through `conn`:
/// each answered as it is handed over, the answers written together.
/// Returns how many were answered.
fn pipelined_batch(server: &mut Server, conn: ebb_core::ConnId, batch: &[u8], now: Time) -> usize {
    server.handle_recv(conn, batch, now);
    let mut answered = 0;
    while let Some(event) = server.poll_event() {
        match event {
            Event::Request(id) => {
                answer(server, id, now);
                answered += 1;
            }
            Event::Transmit(c) => {
                let n: usize = server.transmit(c).iter().map(|s| s.len()).sum();
                server.handle_sent(c, n, now);
            }
            _ => {}
        }
    }
    answered
}

#[test]
fn pipelined_batches_in_steady_state_allocate_nothing() {
    TRACKED.with(|t| t.set(true));
    let mut server = Server::new(Config::default());
    let now = Time::ZERO;
    let batch = REQUEST.repeat(16);
    let conn = server.handle_accept(now);
    for _ in 0..10 {
        assert_eq!(pipelined_batch(&mut server, conn, &batch, now), 16);
    }
    let before = allocations();
    for _ in 0..100 {
        assert_eq!(pipelined_batch(&mut server, conn, &batch, now), 16);
    }
    let allocations = allocations() - before;
    assert_eq!(
        allocations, 0,
        "allocations in 100 steady-state batches of 16 pipelined requests"
    );
    ebb_testkit::properties::assert_invariants(&server);
}

/// A batch of pipelined requests answered last first, as an application
/// that works on them together may: every answer but the first is parked
/// until its turn, and in steady state the parked answers reuse buffers
/// rather than allocate.
#[test]
fn pipelined_batches_answered_out_of_order_allocate_nothing() {
    TRACKED.with(|t| t.set(true));
    let mut server = Server::new(Config::default());
    let now = Time::ZERO;
    let batch = REQUEST.repeat(16);
    let conn = server.handle_accept(now);
    let mut ids = Vec::with_capacity(16);
    let mut batch_answered_last_first = |server: &mut Server| {
        server.handle_recv(conn, &batch, now);
        ids.clear();
        while let Some(event) = server.poll_event() {
            if let Event::Request(id) = event {
                ids.push(id);
            }
        }
        assert_eq!(ids.len(), 16, "the whole batch is handed over");
        for &id in ids.iter().rev() {
            answer(server, id, now);
        }
        write_all(server, now);
    };
    for _ in 0..10 {
        batch_answered_last_first(&mut server);
    }
    let before = allocations();
    for _ in 0..100 {
        batch_answered_last_first(&mut server);
    }
    let allocations = allocations() - before;
    assert_eq!(
        allocations, 0,
        "allocations in 100 steady-state batches of 16 requests answered last first"
    );
    assert_eq!(server.active_requests(), 0);
    ebb_testkit::properties::assert_invariants(&server);
}

/// Reads that each end mid-request (as TCP may cut a pipelined stream)
/// keep only the unread part: the bytes already handed over are let go of
/// as more arrive, so the input buffer does not grow, and nothing is
/// allocated in steady state.
#[test]
fn reads_that_end_mid_request_keep_only_what_is_unread() {
    TRACKED.with(|t| t.set(true));
    let mut server = Server::new(Config::default());
    let now = Time::ZERO;
    let conn = server.handle_accept(now);
    let half = REQUEST.len() / 2;
    // Half a request, then a request's length each time: every read
    // completes the request before it and leaves half of the next.
    let stream = REQUEST.repeat(1_200);
    let mut reads = std::iter::once(&stream[..half]).chain(stream[half..].chunks(REQUEST.len()));
    for read in reads.by_ref().take(100) {
        pipelined_batch(&mut server, conn, read, now);
    }
    let before = allocations();
    let mut answered = 0;
    for read in reads.take(1_000) {
        answered += pipelined_batch(&mut server, conn, read, now);
    }
    assert_eq!(answered, 1_000);
    assert_eq!(
        allocations() - before,
        0,
        "allocations in 1,000 split reads"
    );
    ebb_testkit::properties::assert_invariants(&server);
}

#[test]
fn idle_connections_hold_no_buffers_and_steady_state_allocates_nothing() {
    TRACKED.with(|t| t.set(true));
    let mut server = Server::new(Config::default());
    let now = Time::ZERO;

    // Steady state: after a warm-up, keep-alive cycles allocate nothing.
    let conn = server.handle_accept(now);
    for _ in 0..10 {
        cycle(&mut server, conn, now);
    }
    let before = allocations();
    for _ in 0..1_000 {
        cycle(&mut server, conn, now);
    }
    let allocations = allocations() - before;
    assert_eq!(
        allocations, 0,
        "allocations in 1,000 steady-state keep-alive cycles"
    );

    // 10,000 idle connections that each completed a request.
    let baseline = live_bytes();
    let conns: Vec<_> = (0..10_000).map(|_| server.handle_accept(now)).collect();
    for &c in &conns {
        cycle(&mut server, c, now);
    }
    let held = live_bytes() - baseline;
    let vec_of_ids = (conns.capacity() * std::mem::size_of::<ebb_core::ConnId>()) as isize;
    let core_bytes = held - vec_of_ids;
    eprintln!(
        "10,000 idle connections hold {core_bytes} bytes in core ({} per connection)",
        core_bytes / 10_000
    );
    assert!(core_bytes < 4 * 1024 * 1024, "{core_bytes} bytes");
    assert_eq!(server.connections(), 10_001);
    assert_eq!(server.active_requests(), 0);
    ebb_testkit::properties::assert_invariants(&server);
}

/// A long stream to a client that never quite catches up: the output
/// buffer never empties, yet what core holds stays near the stream buffer's
/// bound — the bytes already written are let go of, not kept ahead of the
/// unwritten ones.
#[test]
fn a_stream_to_a_client_that_lags_holds_no_more_than_its_buffer() {
    TRACKED.with(|t| t.set(true));
    let config = Config::default();
    let bound = config.max_stream_buffer_bytes as isize;
    let mut server = Server::new(config);
    let now = Time::ZERO;
    let conn = server.handle_accept(now);
    server.handle_recv(conn, REQUEST, now);
    let id = std::iter::from_fn(|| server.poll_event())
        .find_map(|event| match event {
            Event::Request(id) => Some(id),
            _ => None,
        })
        .expect("request dispatched");
    server
        .handle_stream_start(
            id,
            200,
            [("Content-Type", "text/plain")],
            ebb_core::BodyLength::Unknown,
            now,
        )
        .unwrap();
    let chunk = vec![b'x'; 16 * 1024];
    let baseline = live_bytes();
    let mut peak = 0;
    // 256 MiB through the stream; each write leaves 100 bytes behind.
    for _ in 0..1024 {
        while server.handle_stream_data(id, &chunk, now).unwrap() == chunk.len() {}
        while server.poll_event().is_some() {}
        let pending: usize = server.transmit(conn).iter().map(|s| s.len()).sum();
        server.handle_sent(conn, pending - 100, now);
        while server.poll_event().is_some() {}
        peak = peak.max(live_bytes() - baseline);
    }
    assert!(
        peak <= 4 * bound,
        "{peak} bytes held, {bound} buffered at most"
    );
}
