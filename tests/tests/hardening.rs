//! End-to-end proof of the hardening of issue 12, against the real binary:
//! keep-alive off, the new connection's own bound, empty lines and trickled
//! bodies that meet a deadline, descriptor pressure, the farewell 503 of a
//! drain that cuts an upload, and the RFC 9112 request-line and `Host` rules.
//!
//! Timeouts are made small with flags so each test takes about a second;
//! the windows asserted are generous because the machine is shared. Each test
//! prints the figure it measured.

use std::io::{self, ErrorKind, Read, Write};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ebb_tests::{serial, Client, Ebb, Response};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Whether `e` is a read timeout (the socket's read timeout passed).
fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Sends `tick` every `every` until a response arrives; the response and how
/// long after the first `tick` it came. A write that fails (the server has
/// closed) is ignored: the response may still be there to read.
fn trickle_until_response(
    client: &mut Client,
    tick: &[u8],
    every: Duration,
) -> (Response, Duration) {
    client.stream.set_read_timeout(Some(every)).unwrap();
    let began = Instant::now();
    loop {
        let _ = client.stream.write_all(tick);
        match client.read_response() {
            Ok(response) => {
                client.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                return (response, began.elapsed());
            }
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("after {:?} of trickling: {e}", began.elapsed()),
        }
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "no response after 15 s of trickling"
        );
    }
}

/// Sends a raw request and reads the response.
fn exchange(ebb: &Ebb, request: &str) -> Response {
    let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    client.stream.write_all(request.as_bytes()).unwrap();
    client
        .read_response()
        .unwrap_or_else(|e| panic!("{request:?}: {e}\n{}", ebb.log()))
}

#[test]
fn keep_alive_timeout_zero_closes_after_each_response_but_waits_for_the_first_request() {
    let _serial = serial();
    let ebb = Ebb::start(&["--keep-alive-timeout", "0"]);
    let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    let response = client.get("/").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"Hello, World!");
    assert!(response.close, "keep-alive is off: {response:?}");
    client.read_to_eof().unwrap();
    // Our FIN ends the server's linger, so the drain need not wait for it.
    drop(client);

    // The wait for a first request has its own bound: a client that pauses
    // after connecting is still answered.
    for pause in [100, 200] {
        let mut late = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
        thread::sleep(Duration::from_millis(pause));
        let response = late
            .get("/")
            .unwrap_or_else(|e| panic!("paused {pause} ms before the request: {e}"));
        assert_eq!(response.status, 200, "paused {pause} ms");
        assert!(response.close, "paused {pause} ms: {response:?}");
        late.read_to_eof().unwrap();
    }
    println!("keep-alive 0: answered with Connection: close, also after a 100 and a 200 ms pause");
    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(5));
}

#[test]
fn new_connection_timeout_closes_a_silent_connection() {
    let _serial = serial();
    let ebb = Ebb::start(&[
        "--keep-alive-timeout",
        "0",
        "--new-connection-timeout",
        "0.5",
    ]);
    let mut silent = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    let connected = Instant::now();
    silent.read_to_eof().unwrap();
    let took = connected.elapsed();
    println!(
        "silent new connection closed after {:.1} ms (--new-connection-timeout 0.5)",
        ms(took)
    );
    assert!(
        (400..=3000).contains(&took.as_millis()),
        "closed after {took:?}, expected about 0.5 s"
    );
    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(5));
}

#[test]
fn empty_lines_alone_get_408_at_the_header_timeout() {
    let _serial = serial();
    let ebb = Ebb::start(&["--header-timeout", "1"]);
    let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    let (response, took) = trickle_until_response(&mut client, b"\r\n", Duration::from_millis(200));
    println!(
        "CRLF every 200 ms: {} after {:.1} ms (--header-timeout 1)",
        response.status,
        ms(took)
    );
    assert_eq!(response.status, 408, "{response:?}");
    assert!(response.close, "{response:?}");
    assert!(
        (800..=3000).contains(&took.as_millis()),
        "408 after {took:?}, expected about 1 s"
    );
    client.read_to_eof().unwrap();
    drop(client);
    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(5));
}

#[test]
fn body_trickled_below_the_minimum_rate_gets_408_after_the_grace() {
    let _serial = serial();
    let ebb = Ebb::start(&["--min-body-rate", "500", "--body-rate-grace", "1"]);
    // A body sent at once is well above the rate.
    let body = "x".repeat(1000);
    let fast = exchange(
        &ebb,
        &format!("POST /echo HTTP/1.1\r\nHost: ebb\r\nContent-Length: 1000\r\n\r\n{body}"),
    );
    assert_eq!(fast.status, 200, "{fast:?}");
    assert_eq!(fast.body, body.as_bytes());

    // One byte every 100 ms is 10 B/s: refused once the grace has passed
    // and the bytes so far fall short of 500 B/s over the time since.
    let mut slow = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    slow.stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: ebb\r\nContent-Length: 1000\r\n\r\n")
        .unwrap();
    let (response, took) = trickle_until_response(&mut slow, b"x", Duration::from_millis(100));
    println!(
        "body at 1 byte / 100 ms: {} after {:.1} ms (--min-body-rate 500 --body-rate-grace 1)",
        response.status,
        ms(took)
    );
    assert_eq!(response.status, 408, "{response:?}");
    assert!(response.close, "{response:?}");
    assert!(
        String::from_utf8_lossy(&response.body).contains("too slowly"),
        "{response:?}"
    );
    assert!(
        (900..=4000).contains(&took.as_millis()),
        "408 after {took:?}, expected a little over the 1 s grace"
    );
    slow.read_to_eof().unwrap();
    drop(slow);
    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(5));
}

/// How an idle client's connection ended while it was watched.
#[derive(Copy, Clone, Debug, PartialEq)]
enum Ending {
    /// The server closed it cleanly: EOF.
    Eof,
    /// It was reset, or the read failed.
    Reset,
    /// The server sent bytes on an idle connection.
    Data,
    /// Still open when the watch ended.
    Open,
}

/// Reads `client` until it ends or `stop` is set; closes it on EOF, as a
/// client pool does, which frees the server's descriptor.
fn watch(mut client: Client, stop: Arc<AtomicBool>) -> Ending {
    client
        .stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0; 64];
    loop {
        match client.stream.read(&mut buf) {
            Ok(0) => return Ending::Eof,
            Ok(_) => return Ending::Data,
            Err(e) if timed_out(&e) => {}
            Err(_) => return Ending::Reset,
        }
        if stop.load(Ordering::SeqCst) {
            return Ending::Open;
        }
    }
}

#[test]
fn out_of_descriptors_closes_idle_keep_alive_connections_to_serve_a_new_one() {
    use std::os::unix::process::CommandExt;

    const LIMIT: u64 = 64;
    let _serial = serial();
    let mut command = Command::new(ebb_tests::ebb_binary());
    command
        .args(["--bind", "127.0.0.1:0", "--workers", "1"])
        .env_remove("PORT")
        .env_remove("SHUTDOWN_TIMEOUT_S")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID");
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let ebb = Ebb::spawn(command);
    // Descriptors numbered below the limit: one inherited above it (the
    // test harness may pass some) takes no room.
    let descriptors = || {
        std::fs::read_dir(format!("/proc/{}/fd", ebb.pid()))
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .filter(|&fd| fd < LIMIT)
            .count() as u64
    };
    let room = LIMIT - descriptors();

    // Fill every free descriptor with an idle keep-alive connection.
    let idle: Vec<Client> = (0..room)
        .map(|i| {
            let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
            let response = client
                .get("/")
                .unwrap_or_else(|e| panic!("idle client {i}: {e}\n{}", ebb.log()));
            assert_eq!(response.status, 200, "idle client {i}");
            assert!(!response.close, "idle client {i} is kept alive");
            client
        })
        .collect();
    let full = descriptors();
    // With every descriptor taken and nobody else waiting, nothing is
    // evicted (Linux says EMFILE even on an empty backlog; the worker's
    // spare descriptor tells the two apart).
    thread::sleep(Duration::from_millis(500));
    for (i, client) in idle.iter().enumerate() {
        client.stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        match client.stream.peek(&mut byte) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("idle client {i} was closed with nobody waiting: {other:?}"),
        }
        client.stream.set_nonblocking(false).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let watchers: Vec<_> = idle
        .into_iter()
        .map(|client| {
            let stop = stop.clone();
            thread::spawn(move || watch(client, stop))
        })
        .collect();

    // The next client gets its answer: the longest-idle ones make room.
    let began = Instant::now();
    let mut new = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    let response = new
        .get("/")
        .unwrap_or_else(|e| panic!("the new client: {e}\n{}", ebb.log()));
    let took = began.elapsed();
    assert_eq!(response.status, 200);
    stop.store(true, Ordering::SeqCst);
    let endings: Vec<Ending> = watchers.into_iter().map(|w| w.join().unwrap()).collect();
    let count = |ending| endings.iter().filter(|&&e| e == ending).count();
    println!(
        "descriptor limit {LIMIT}: {room} idle connections filled it ({full} open); \
         a new client was served in {:.1} ms; idle ones: {} saw EOF, {} reset, {} data, {} still open",
        ms(took),
        count(Ending::Eof),
        count(Ending::Reset),
        count(Ending::Data),
        count(Ending::Open),
    );
    // The log is read from a pipe by another thread: it may lag behind.
    assert!(
        ebb.wait_for_log("out of descriptors", Duration::from_secs(10)),
        "the limit was hit:\n{}",
        ebb.log()
    );
    assert!(
        took < Duration::from_secs(5),
        "the new client waited {took:?}"
    );
    assert!(count(Ending::Eof) >= 1, "idle connections made room");
    assert_eq!(
        count(Ending::Reset),
        0,
        "idle ones close cleanly: {endings:?}"
    );
    assert_eq!(count(Ending::Data), 0, "{endings:?}");
    drop(new);
    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(5));
}

#[test]
fn drain_deadline_cuts_an_upload_with_a_farewell_503() {
    let _serial = serial();
    // Whole bodies: the upload is still core's, not the application's (a
    // streamed one is the application's, and is cut without a farewell).
    let ebb = Ebb::start(&["--drain-timeout", "1", "--whole-bodies"]);
    let mut upload = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    // The head and a little of the body, then nothing: no input is left
    // unread when the deadline closes the connection, so nothing resets it.
    upload
        .stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: ebb\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    upload.stream.write_all(&[b'x'; 100]).unwrap();
    thread::sleep(Duration::from_millis(200));
    ebb.signal(libc::SIGTERM);
    let terminated = Instant::now();
    let response = upload
        .read_response()
        .unwrap_or_else(|e| panic!("no farewell: {e}\n{}", ebb.log()));
    let took = terminated.elapsed();
    println!(
        "upload cut by --drain-timeout 1: {} {:?} after {:.1} ms, Retry-After {:?}",
        response.status,
        response.reason(),
        ms(took),
        response.header("Retry-After")
    );
    assert_eq!(response.status, 503, "{response:?}");
    assert!(response.close, "{response:?}");
    assert!(response.header("Retry-After").is_some(), "{response:?}");
    assert!(
        (800..=3000).contains(&took.as_millis()),
        "503 {took:?} after SIGTERM, expected about 1 s"
    );
    ebb.expect_exit_code(Duration::from_secs(5), 3);
    let log = ebb.log();
    let report = log
        .lines()
        .rev()
        .find(|l| l.contains("drain forced by deadline"))
        .unwrap_or_else(|| panic!("no drain report:\n{log}"));
    println!("{report}");
    assert!(report.contains("cut 1,"), "{report}");
    assert!(report.contains("reset-risk closes 1"), "{report}");
}

#[test]
fn absolute_form_target_is_routed_by_its_path() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let authority = ebb.addr.to_string();
    let response = exchange(
        &ebb,
        &format!("GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n\r\n"),
    );
    println!(
        "GET http://{authority}/ → {} {:?}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, b"Hello, World!");
    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(5));
}

#[test]
fn host_with_a_slash_is_400() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let response = exchange(&ebb, "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n");
    println!(
        "Host: a/b → {} {:?}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.status, 400, "{response:?}");
    assert!(response.close, "{response:?}");
    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(5));
}

#[test]
fn space_inside_the_method_is_400() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let response = exchange(&ebb, "GE T / HTTP/1.1\r\nHost: ebb\r\n\r\n");
    println!(
        "GE T / → {} {:?}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.status, 400, "{response:?}");
    assert!(response.close, "{response:?}");
    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(5));
}

/// A stderr that stops taking lines (a paused pipe reader, a stuck log
/// shipper) once the pipe is full: the access log's lines wait, then drop,
/// but requests are served and a SIGTERM drains and exits as ever (what is
/// still queued then has a bounded time to be written).
#[test]
fn a_stalled_stderr_holds_up_neither_requests_nor_the_exit() {
    let _serial = serial();
    let ebb = Ebb::start(&["--workers", "2"]);
    let stall = ebb.stall_log();
    // Some 150 bytes of access log each: several times the 64 KiB a pipe
    // holds, and more than the logger queues.
    let requests = 10_000;
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let addr = ebb.addr;
            thread::spawn(move || {
                let mut client = Client::connect(addr, IO_TIMEOUT).unwrap();
                for _ in 0..requests / 2 {
                    assert_eq!(client.get("/").unwrap().status, 200);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("every request answered");
    }
    ebb.signal(libc::SIGTERM);
    let exited = ebb.wait_exit(Duration::from_secs(15));
    drop(stall);
    let (status, _) = exited.unwrap_or_else(|| panic!("no exit behind the stalled stderr"));
    assert!(status.success(), "{status}");
    ebb.expect_clean_exit(Duration::from_secs(5));
    assert!(ebb.log().contains("ebb listening"), "{}", ebb.log());
}
