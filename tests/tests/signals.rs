//! End-to-end: what each signal does to the real `ebb` binary, and that a
//! stop signal is never lost, whenever in start-up it comes.

use std::thread;
use std::time::{Duration, Instant};

use ebb_tests::{serial, Client, Ebb};

const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// A lost stop signal shows as no exit; a kept one ends the process long
/// before this, even on a shared machine.
const EXIT_BOUND: Duration = Duration::from_secs(20);

#[test]
fn sigterm_at_any_moment_of_start_up_stops_ebb() {
    let _serial = serial();
    // From the moment ebb catches SIGTERM: before its listener is bound,
    // while its 64 workers are being created, and once they serve. (Before
    // that moment the process is still loading, and the system's default
    // action ends it.)
    let delays_us = [0, 500, 1_000, 2_000, 5_000, 10_000, 20_000];
    let mut runs = 0;
    let started = Instant::now();
    for _round in 0..5 {
        for delay_us in delays_us {
            let ebb = Ebb::launch(&["--workers", "64"]);
            let launched = Instant::now();
            while !ebb.catches(libc::SIGTERM) {
                assert!(ebb.exit().is_none(), "ebb exited at start:\n{}", ebb.log());
                assert!(
                    launched.elapsed() < EXIT_BOUND,
                    "ebb never caught SIGTERM:\n{}",
                    ebb.log()
                );
                thread::sleep(Duration::from_micros(50));
            }
            thread::sleep(Duration::from_micros(delay_us));
            ebb.signal(libc::SIGTERM);
            let signalled = Instant::now();
            let exited = ebb.expect_clean_exit(EXIT_BOUND);
            let log = ebb.log();
            assert_eq!(
                log.matches("SIGTERM: draining").count(),
                1,
                "one log line for the one stop request (SIGTERM {delay_us} µs in):\n{log}"
            );
            println!(
                "SIGTERM {delay_us:>6} µs after ebb caught it: exit {:.1} ms later",
                (exited - signalled).as_secs_f64() * 1000.0
            );
            runs += 1;
        }
    }
    println!(
        "{runs} runs with 64 workers, none lost, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn sigquit_drains_like_sigterm() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let mut in_flight = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    in_flight.send_get("/sleep?ms=500").unwrap();
    thread::sleep(Duration::from_millis(100));
    ebb.signal(libc::SIGQUIT);
    let response = in_flight.read_response().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"slept\n");
    assert!(
        response.close,
        "drain responses carry Connection: close: {response:?}"
    );
    in_flight.read_to_eof().unwrap();
    drop(in_flight);
    ebb.expect_clean_exit(Duration::from_secs(5));
    let log = ebb.log();
    assert!(log.contains("SIGQUIT: draining"), "{log}");
    assert!(log.contains("drain complete"), "{log}");
}

#[test]
fn sighup_is_logged_and_ignored() {
    ignored_signal(libc::SIGHUP, "SIGHUP");
}

#[test]
fn sigusr1_is_logged_and_ignored() {
    ignored_signal(libc::SIGUSR1, "SIGUSR1");
}

/// `signal` in the middle of a request: the request is answered as if nothing
/// happened, the log says the signal was ignored, new requests are served,
/// and SIGTERM still stops ebb cleanly.
fn ignored_signal(signal: i32, name: &str) {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let mut in_flight = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    in_flight.send_get("/sleep?ms=300").unwrap();
    thread::sleep(Duration::from_millis(100));
    ebb.signal(signal);
    let response = in_flight.read_response().unwrap();
    assert_eq!(response.status, 200);
    assert!(!response.close, "not draining after {name}: {response:?}");
    assert!(
        ebb.wait_for_log(&format!("{name} ignored"), IO_TIMEOUT),
        "the log says {name} is ignored:\n{}",
        ebb.log()
    );
    assert!(ebb.exit().is_none(), "{name} ended ebb:\n{}", ebb.log());
    let mut late = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    assert_eq!(late.get("/").unwrap().status, 200);
    assert_eq!(in_flight.get("/").unwrap().status, 200);
    drop((in_flight, late));

    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(5));
    let log = ebb.log();
    assert_eq!(log.matches(&format!("{name} ignored")).count(), 1, "{log}");
    assert!(log.contains("SIGTERM: draining"), "{log}");
}
