//! Idle keep-alive connections hold no heap buffers: 10,000 of them, each
//! having completed one request, cost core less than 4 MiB in all. And a
//! keep-alive cycle in steady state allocates nothing.
//!
//! Its own test binary, because it installs a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use ebb_core::{Bytes, Config, Event, Server, Time};

/// Counts only what the test's own thread allocates: the test harness's
/// other threads allocate too, at times of their own.
struct Counting;

thread_local! {
    static TRACKED: Cell<bool> = const { Cell::new(false) };
}

fn tracked() -> bool {
    TRACKED.try_with(Cell::get).unwrap_or(false)
}

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if tracked() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if tracked() {
            LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if tracked() {
            let grown = new_size as isize - layout.size() as isize;
            LIVE_BYTES.fetch_add(grown, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
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
    server
        .handle_response(
            id,
            200,
            [("Content-Type", "text/plain")],
            Bytes::from_static(b"Hello, World!"),
            now,
        )
        .unwrap();
    while let Some(event) = server.poll_event() {
        if let Event::Transmit(c) = event {
            let n: usize = server.transmit(c).iter().map(|s| s.len()).sum();
            server.handle_sent(c, n, now);
        }
    }
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
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..1_000 {
        cycle(&mut server, conn, now);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(
        allocations, 0,
        "allocations in 1,000 steady-state keep-alive cycles"
    );

    // 10,000 idle connections that each completed a request.
    let baseline = LIVE_BYTES.load(Ordering::Relaxed);
    let conns: Vec<_> = (0..10_000).map(|_| server.handle_accept(now)).collect();
    for &c in &conns {
        cycle(&mut server, c, now);
    }
    let held = LIVE_BYTES.load(Ordering::Relaxed) - baseline;
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
