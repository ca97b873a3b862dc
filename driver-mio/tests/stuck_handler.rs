//! A handler that never returns holds its worker's loop, and with it the
//! worker's drain deadline. `serve` must not wait for it forever: it gives
//! up on such a worker a grace after the deadline, or soon after a second
//! stop, and says so in its report. While serving, a handler call that
//! lasts is logged.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ebb_mio::{Builder, DrainReport, Forced, Response, ShutdownHandle};

/// A server whose `/block` handler waits until the test releases it.
struct Blocking {
    addr: SocketAddr,
    shutdown: ShutdownHandle,
    /// Told each time a `/block` handler begins.
    entered: Receiver<()>,
    /// Dropped to release the blocked handlers once the test is done.
    release: Sender<()>,
    server: std::thread::JoinHandle<std::io::Result<DrainReport>>,
}

impl Blocking {
    /// On a listener of the test's.
    fn start(workers: usize, drain_timeout: Duration) -> Blocking {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        Blocking::serve(
            Builder::new().listener(listener),
            addr,
            workers,
            drain_timeout,
        )
    }

    /// On a port ebb binds itself: one found free, then let go.
    fn start_bound(workers: usize, drain_timeout: Duration) -> Blocking {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        Blocking::serve(Builder::new().bind(addr), addr, workers, drain_timeout)
    }

    fn serve(
        builder: Builder,
        addr: SocketAddr,
        workers: usize,
        drain_timeout: Duration,
    ) -> Blocking {
        let builder = builder
            .workers(workers)
            .signals(false)
            .drain_timeout(drain_timeout);
        let shutdown = builder.shutdown_handle();
        let (entered_tx, entered) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let entered_tx = Mutex::new(entered_tx);
        let released = Arc::new(Mutex::new(released));
        let server = std::thread::spawn(move || {
            builder.serve(move |req, res| {
                if req.path() == "/block" {
                    let _ = entered_tx.lock().unwrap().send(());
                    // Blocks the worker until the sender is dropped.
                    let _ = released.lock().unwrap().recv();
                }
                res.respond(Response::text(200, "done"));
            })
        });
        Blocking {
            addr,
            shutdown,
            entered,
            release,
            server,
        }
    }

    /// Sends `GET /block` and waits until its handler has begun.
    fn block_a_worker(&self) -> TcpStream {
        // A server that binds its own port may not listen yet.
        let since = Instant::now();
        let mut stream = loop {
            match TcpStream::connect(self.addr) {
                Ok(stream) => break stream,
                Err(e) if since.elapsed() < Duration::from_secs(10) => {
                    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("the server never listened: {e}"),
            }
        };
        stream
            .write_all(b"GET /block HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        self.entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the handler began");
        stream
    }

    /// Waits for `serve` to return; its report and how long it took.
    fn stopped(self, since: Instant) -> (DrainReport, Duration) {
        let report = self.server.join().unwrap().unwrap();
        let took = since.elapsed();
        drop(self.release);
        (report, took)
    }
}

#[test]
fn a_worker_stuck_in_its_handler_is_given_up_on_after_the_deadline() {
    let drain = Duration::from_millis(300);
    let server = Blocking::start(2, drain);
    let _client = server.block_a_worker();
    let stop = Instant::now();
    server.shutdown.shutdown();
    let (report, took) = server.stopped(stop);
    assert_eq!(report.forced, Some(Forced::Deadline), "{report}");
    assert_eq!(report.stuck_workers, 1, "the other worker exited: {report}");
    assert!(report.lost_work());
    // The drain deadline and a 2 s grace, with room for a slow machine.
    assert!(took >= drain, "gave up after {took:?}, before the deadline");
    assert!(
        took < Duration::from_secs(15),
        "serve returned after {took:?}"
    );
}

#[test]
fn a_worker_given_up_on_takes_no_client_and_serves_nothing_when_it_returns() {
    let server = Blocking::start_bound(2, Duration::from_millis(200));
    let mut held = server.block_a_worker();
    server.shutdown.shutdown();
    let report = server.server.join().unwrap().unwrap();
    assert_eq!(report.stuck_workers, 1, "{report}");
    // The listening socket is stopped, though the stuck worker holds it: a
    // client is refused, not queued where nobody accepts it, and the
    // embedding program can bind the port again.
    let refused = TcpStream::connect(server.addr).map(drop);
    assert_eq!(
        refused.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionRefused)
    );
    let again = TcpListener::bind(server.addr).expect("the port is free");
    // Released, the handler returns to a worker that serves nothing more:
    // its held client gets no late answer, only the close.
    drop(server.release);
    held.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    match held.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::ConnectionReset,
            "closed, not left open: {e}"
        ),
    }
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    drop(again);
}

/// A socket ebb did not bind (the embedding program's here; systemd's or a
/// predecessor's alike) may be held elsewhere too: it is not shut down.
#[test]
fn a_listener_passed_in_is_left_listening_when_its_worker_is_given_up_on() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let kept = listener.try_clone().unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Blocking::serve(
        Builder::new().listener(listener),
        addr,
        1,
        Duration::from_millis(200),
    );
    let _held = server.block_a_worker();
    server.shutdown.shutdown();
    let report = server.server.join().unwrap().unwrap();
    assert_eq!(report.stuck_workers, 1, "{report}");
    let _client = TcpStream::connect(addr).expect("still listening");
    kept.set_nonblocking(false).unwrap();
    kept.accept().expect("the program's copy still accepts");
    drop(server.release);
}

#[test]
fn a_second_stop_gives_up_on_a_stuck_worker_without_waiting_for_the_deadline() {
    let server = Blocking::start(1, Duration::from_secs(120));
    let _client = server.block_a_worker();
    let stop = Instant::now();
    server.shutdown.shutdown();
    server.shutdown.shutdown();
    let (report, took) = server.stopped(stop);
    assert_eq!(report.forced, Some(Forced::SecondTerminate), "{report}");
    assert_eq!(report.stuck_workers, 1, "{report}");
    // A 1 s grace, with room for a slow machine; the deadline is 120 s.
    assert!(
        took < Duration::from_secs(15),
        "serve returned after {took:?}"
    );
}

#[test]
fn a_handler_that_returns_before_the_deadline_is_waited_for() {
    let server = Blocking::start(1, Duration::from_secs(30));
    let mut client = server.block_a_worker();
    server.shutdown.shutdown();
    std::thread::sleep(Duration::from_millis(200));
    let Blocking {
        server, release, ..
    } = server;
    drop(release);
    // Answered, then closed by the drain once idle.
    let mut answer = String::new();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::io::Read::read_to_string(&mut client, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("done"), "{answer}");
    drop(client);
    let report = server.join().unwrap().unwrap();
    assert_eq!(report.forced, None, "{report}");
    assert_eq!(report.stuck_workers, 0, "{report}");
    assert!(!report.lost_work(), "{report}");
}

/// Every line logged in this test binary, at warn level and above.
fn warnings() -> &'static Mutex<Vec<String>> {
    struct Capture(Mutex<Vec<String>>);
    impl log::Log for Capture {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::Level::Warn
        }
        fn log(&self, record: &log::Record<'_>) {
            if self.enabled(record.metadata()) {
                self.0.lock().unwrap().push(record.args().to_string());
            }
        }
        fn flush(&self) {}
    }
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    let capture = CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(capture).unwrap();
        log::set_max_level(log::LevelFilter::Warn);
        capture
    });
    &capture.0
}

#[test]
fn a_handler_call_that_lasts_is_logged_while_serving() {
    let logged = warnings();
    let server = Blocking::start(1, Duration::from_secs(30));
    let _client = server.block_a_worker();
    let since = Instant::now();
    let warning = loop {
        let found = logged
            .lock()
            .unwrap()
            .iter()
            .find(|line| line.starts_with("worker 0 has been in one handler call"))
            .cloned();
        if let Some(line) = found {
            break line;
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "no warning after {:?}",
            since.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Told after 10 s of the call, looked at every second.
    assert!(since.elapsed() >= Duration::from_secs(9), "{warning}");
    assert!(warning.contains("its 1 connections wait"), "{warning}");
    let Blocking {
        server,
        release,
        shutdown,
        ..
    } = server;
    drop(release);
    shutdown.shutdown();
    let report = server.join().unwrap().unwrap();
    assert_eq!(report.stuck_workers, 0, "{report}");
}
