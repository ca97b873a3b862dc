//! End-to-end: the real `ebb` binary, real sockets on loopback, real signals.
//!
//! Bounds are generous where the machine is shared; each test prints the
//! figure it measured.

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ebb_tests::{serial, Client, Ebb};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
fn sigterm_refuses_new_connections_and_finishes_the_one_in_flight() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let mut in_flight = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    in_flight.send_get("/sleep?ms=1000").unwrap();
    thread::sleep(Duration::from_millis(200));
    ebb.signal(libc::SIGTERM);

    let terminated = Instant::now();
    let refused = loop {
        match TcpStream::connect(ebb.addr) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break terminated.elapsed(),
            Err(e) => panic!("unexpected connect error: {e}"),
            // Accepted before the listener closed; drop it and try again.
            Ok(probe) => drop(probe),
        }
        assert!(
            terminated.elapsed() < Duration::from_secs(2),
            "still accepting 2 s after SIGTERM"
        );
        thread::sleep(Duration::from_millis(5));
    };
    println!(
        "new connections refused {:.1} ms after SIGTERM",
        ms(refused)
    );

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
}

#[test]
fn accept_backlog_is_served_after_sigterm() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    ebb.signal(libc::SIGSTOP);
    let mut clients: Vec<Client> = (0..20)
        .map(|_| {
            let mut c = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
            c.send_get("/").unwrap();
            c
        })
        .collect();
    ebb.signal(libc::SIGTERM);
    thread::sleep(Duration::from_millis(50));
    ebb.signal(libc::SIGCONT);
    for (i, client) in clients.iter_mut().enumerate() {
        let response = client
            .read_response()
            .unwrap_or_else(|e| panic!("queued connection {i}: {e}\n{}", ebb.log()));
        assert_eq!(response.status, 200, "queued connection {i}");
        assert_eq!(response.body, b"Hello, World!");
    }
    drop(clients);
    ebb.expect_clean_exit(Duration::from_secs(5));
    // Whether the workers saw the queued connections or the signal first after
    // SIGCONT is a race; either way every request is answered.
    let log = ebb.log();
    let report = log.lines().rev().find(|l| l.contains("drain complete"));
    println!("accept-backlog: {}", report.unwrap_or("no drain report"));
}

#[test]
fn drain_timeout_cuts_the_slow_request_and_names_it() {
    let _serial = serial();
    let ebb = Ebb::start(&["--drain-timeout", "2"]);
    let mut slow = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    slow.send_get("/sleep?ms=60000").unwrap();
    thread::sleep(Duration::from_millis(300));
    ebb.signal(libc::SIGTERM);
    let terminated = Instant::now();
    let exited = ebb.expect_exit_code(Duration::from_secs(10), 3);
    let took = exited - terminated;
    println!(
        "exit {:.1} ms after SIGTERM with --drain-timeout 2",
        ms(took)
    );
    assert!(
        (1500..=2500).contains(&took.as_millis()),
        "exit {took:?} after SIGTERM, expected 2 s ± 0.5 s"
    );
    let log = ebb.log();
    assert!(
        log.lines()
            .any(|l| l.contains("cut") && l.contains("GET /sleep?ms=60000")),
        "the log names the cut request:\n{log}"
    );
    assert!(
        log.contains("forced by deadline") && log.contains("cut 1,"),
        "{log}"
    );
    assert!(
        slow.read_response().is_err(),
        "the cut request got no response"
    );
}

#[test]
fn idle_keep_alive_connections_do_not_delay_exit() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let mut clients: Vec<Client> = (0..50)
        .map(|_| {
            let mut c = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
            assert_eq!(c.get("/").unwrap().status, 200);
            c
        })
        .collect();
    // Some were active moments ago: they get the rest of the idle-close window.
    assert_eq!(clients[49].get("/").unwrap().status, 200);
    let readers: Vec<_> = clients
        .drain(..)
        .map(|mut c| thread::spawn(move || c.read_to_eof()))
        .collect();
    ebb.signal(libc::SIGTERM);
    let terminated = Instant::now();
    let exited = ebb.expect_clean_exit(Duration::from_secs(5));
    let took = exited - terminated;
    for (i, reader) in readers.into_iter().enumerate() {
        let eof = reader.join().unwrap();
        assert!(eof.is_ok(), "connection {i} saw {eof:?}, not a clean EOF");
    }
    println!(
        "50 idle keep-alive connections: exit {:.1} ms after SIGTERM",
        ms(took)
    );
    assert!(took < Duration::from_millis(500), "exit took {took:?}");
    assert!(ebb.log().contains("idle closed 50,"), "{}", ebb.log());
}

#[test]
fn aborted_connections_do_not_delay_exit() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    for i in 0..200 {
        let mut c = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
        let partial: &[u8] = if i % 2 == 0 {
            b"GET / HTTP/1.1\r\nHost: eb"
        } else {
            b"POST /echo HTTP/1.1\r\nHost: ebb\r\nContent-Length: 100\r\n\r\nhalf a bo"
        };
        c.stream.write_all(partial).unwrap();
        c.reset();
    }
    // Still serving, and every reset has been read by now.
    let mut check = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    assert_eq!(check.get("/").unwrap().status, 200);
    drop(check);
    thread::sleep(Duration::from_millis(300));
    ebb.signal(libc::SIGTERM);
    let terminated = Instant::now();
    let exited = ebb.expect_clean_exit(Duration::from_secs(5));
    let took = exited - terminated;
    println!(
        "200 reset connections: exit {:.1} ms after SIGTERM",
        ms(took)
    );
    assert!(took < Duration::from_millis(300), "exit took {took:?}");
}

#[test]
fn exit_follows_the_last_response_at_once() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    client.send_get("/sleep?ms=500").unwrap();
    thread::sleep(Duration::from_millis(100));
    ebb.signal(libc::SIGTERM);
    let response = client.read_response().unwrap();
    let answered = Instant::now();
    assert_eq!(response.status, 200);
    client.read_to_eof().unwrap();
    drop(client);
    let exited = ebb.expect_clean_exit(Duration::from_secs(5));
    let gap = exited.saturating_duration_since(answered);
    println!("exit {:.2} ms after the last response", ms(gap));
    assert!(
        gap < Duration::from_millis(50),
        "exit {gap:?} after the last response"
    );
}

#[test]
fn reuse_port_sibling_serves_on_when_one_instance_drains() {
    let _serial = serial();
    let a = Ebb::start(&["--reuse-port"]);
    let bind = a.addr.to_string();
    let b = Ebb::start(&["--reuse-port", "--bind", &bind]);
    let addr = a.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let a_gone = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let ok_after_a = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, a_gone) = (stop.clone(), a_gone.clone());
            let (ok, ok_after_a, failed) = (ok.clone(), ok_after_a.clone(), failed.clone());
            thread::spawn(move || {
                let mut conn: Option<Client> = None;
                let started = Instant::now();
                for _ in 0..200_000 {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(30) {
                        break;
                    }
                    let client = match conn.as_mut() {
                        Some(c) => c,
                        None => match Client::connect(addr, Duration::from_secs(2)) {
                            Ok(c) => conn.insert(c),
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        },
                    };
                    match client.get("/") {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if a_gone.load(Ordering::Relaxed) {
                                ok_after_a.fetch_add(1, Ordering::Relaxed);
                            }
                            if r.close {
                                conn = None;
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            conn = None;
                        }
                    }
                }
            })
        })
        .collect();

    thread::sleep(Duration::from_secs(1));
    a.signal(libc::SIGTERM);
    let terminated = Instant::now();
    let exited = a.expect_clean_exit(Duration::from_secs(10));
    a_gone.store(true, Ordering::Relaxed);
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let (ok, ok_after_a, failed) = (
        ok.load(Ordering::Relaxed),
        ok_after_a.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!(
        "reuse-port: {ok} requests answered ({ok_after_a} after the drained instance exited), \
         {failed} failed; drained instance exited {:.1} ms after SIGTERM",
        ms(exited - terminated)
    );
    assert!(ok_after_a > 0, "the sibling kept serving");
    assert!(b.exit().is_none(), "the sibling is still running");
    b.signal(libc::SIGTERM);
    b.expect_clean_exit(Duration::from_secs(5));
}

#[test]
fn healthz_fails_during_pre_stop_while_still_serving() {
    let _serial = serial();
    let ebb = Ebb::start(&["--pre-stop", "1"]);
    let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    assert_eq!(client.get("/healthz").unwrap().status, 200);
    ebb.signal(libc::SIGTERM);
    thread::sleep(Duration::from_millis(100));
    // Pre-stop still accepts new connections; readiness now fails.
    let mut late = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    let health = late.get("/healthz").unwrap();
    assert_eq!(health.status, 503);
    assert!(
        health.close,
        "in pre-stop every response closes, so clients leave before the drain: {health:?}"
    );
    // A keep-alive client from before is still served, and told to leave.
    let answer = client.get("/").unwrap();
    assert_eq!(answer.status, 200);
    assert!(answer.close);
    let mut again = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    assert_eq!(again.get("/").unwrap().status, 200);
    // Requests pipelined in one write are all answered; the last closes.
    let mut pipelining = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    let batch = "GET / HTTP/1.1\r\nHost: ebb\r\n\r\n".repeat(3);
    pipelining.stream.write_all(batch.as_bytes()).unwrap();
    let closes: Vec<bool> = (0..3)
        .map(|_| pipelining.read_response().unwrap().close)
        .collect();
    assert_eq!(
        closes,
        [false, false, true],
        "each pipelined request is answered"
    );
    drop((client, late, again, pipelining));
    ebb.expect_clean_exit(Duration::from_secs(5));
    assert!(ebb.log().contains("pre-stop"), "{}", ebb.log());
}

#[test]
fn second_sigterm_forces_the_exit() {
    let _serial = serial();
    let ebb = Ebb::start(&["--drain-timeout", "30"]);
    let mut slow = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    slow.send_get("/sleep?ms=60000").unwrap();
    thread::sleep(Duration::from_millis(200));
    ebb.signal(libc::SIGTERM);
    thread::sleep(Duration::from_millis(200));
    assert!(
        ebb.exit().is_none(),
        "the first SIGTERM waits for the request"
    );
    ebb.signal(libc::SIGTERM);
    let terminated = Instant::now();
    let exited = ebb.expect_exit_code(Duration::from_secs(5), 4);
    println!(
        "second SIGTERM: exit {:.1} ms later",
        ms(exited - terminated)
    );
    let log = ebb.log();
    assert!(
        log.contains("forced by second terminate") && log.contains("cut 1,"),
        "{log}"
    );
}

#[test]
fn systemd_socket_activation_serves_the_inherited_listener() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    let _serial = serial();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    // LISTEN_PID must name ebb itself: the shell sets it to its own pid, then
    // execs ebb. `--bind` names the busy port, so only the inherited socket works.
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\""])
        .arg(ebb_tests::ebb_binary())
        .args(["--bind", &addr.to_string()]);
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if fd == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(fd, 3) != 3 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let ebb = Ebb::spawn(command);
    assert_eq!(ebb.addr, addr);
    assert!(ebb.log().contains("passed by systemd"), "{}", ebb.log());
    let mut client = Client::connect(addr, IO_TIMEOUT).unwrap();
    assert_eq!(client.get("/").unwrap().status, 200);
    drop(client);
    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(5));
    // The service manager's socket outlives the process: clients still queue.
    assert!(TcpStream::connect(addr).is_ok());
}

#[test]
fn out_of_descriptors_pauses_accepting_until_a_connection_closes() {
    let _serial = serial();
    // Few descriptors: some connections must wait in the backlog for a close.
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", "ulimit -n 24 && exec \"$0\" \"$@\""])
        .arg(ebb_tests::ebb_binary())
        .args(["--bind", "127.0.0.1:0", "--workers", "1"]);
    let ebb = Ebb::spawn(command);
    let mut clients: Vec<Client> = (0..30)
        .map(|_| {
            let mut c = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
            c.send_get("/").unwrap();
            c
        })
        .collect();
    for (i, mut client) in clients.drain(..).enumerate() {
        let response = client
            .read_response()
            .unwrap_or_else(|e| panic!("connection {i}: {e}\n{}", ebb.log()));
        assert_eq!(response.status, 200, "connection {i}");
        // Closing frees a descriptor for the next queued connection.
    }
    // The limit shows in the log as a pause, or as idle connections closed
    // to make room (when some were idle as accept failed). The log is read
    // from a pipe by another thread: it may lag behind the responses.
    let hit = |log: &str| log.contains("accept paused") || log.contains("out of descriptors");
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !hit(&ebb.log()) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = ebb.log();
    let pauses = log.matches("accept paused").count();
    println!("descriptor limit: accepting paused {pauses} time(s)");
    assert!(hit(&log), "the limit was hit:\n{log}");
    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(5));
}
