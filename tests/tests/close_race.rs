//! The close race (issue 12, item 5), end to end: keep-alive clients that
//! pause between requests, and a drain that closes their idle connections.
//!
//! A request is lost when it was sent and the connection ended (EOF or
//! reset) with no response: the client cannot know whether it was processed,
//! so it may not retry it. A client moves to a new connection only after a
//! clean `Connection: close`, or after a loss. Two outcomes are not losses
//! and are counted apart: a connect refused because the listener has closed,
//! and a fresh connection reset before its first response — the kernel
//! completed the handshake, but the connection was still in the listen
//! backlog when the listener closed, so ebb never had it (the same event as a
//! refused connect, a little later). A connect that fails otherwise once the
//! listener may have closed (the close met the handshake: a reset, or a
//! hang-up with no error left to read) is that event too; before then, any
//! failed connect fails the test.
//!
//! With `--pre-stop` longer than the clients' idle gaps every client has been
//! told `Connection: close` before the drain begins, so no idle keep-alive
//! connection is left for the drain to close under a request: nothing may be
//! lost. Without pre-stop the drain closes idle connections while clients
//! may be sending on them; the test only prints the loss rate.
//!
//! 100 client threads (not 200: the machine has 2 cores shared with other
//! builds; 100 already keep every worker busy at several hundred requests per
//! second), each pausing a random 150–400 ms between requests, three drains
//! per test, a fresh server for each. The seed of the clients' pauses is
//! printed; `CLOSE_RACE_SEED=<seed>` repeats the same pauses (the timing of a
//! real network never repeats exactly).

use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::ops::AddAssign;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ebb_testkit::rng::Rng;
use ebb_tests::{serial, Client, Ebb};

const CLIENTS: usize = 100;
const DRAINS: usize = 3;
/// The clients' pause between a response and their next request.
const PAUSE_MS: (u64, u64) = (150, 400);
/// How long the clients run before SIGTERM.
const RUN: Duration = Duration::from_millis(700);
/// Longer than the longest pause, with room for a loaded machine.
const PRE_STOP: &str = "0.6";
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What the clients saw, summed over clients and drains.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    sent: u64,
    answered: u64,
    /// Lost on a connection the server had already closed when the request
    /// was sent (its FIN was waiting, unread, at the client).
    lost_after_fin: u64,
    /// Lost with no FIN seen before sending: the close crossed the request.
    lost_in_flight: u64,
    refused: u64,
    /// Reset before the first response, or the connect itself failed, once
    /// the listener may have closed.
    reset_in_backlog: u64,
    /// No response and no close within the I/O timeout.
    timeouts: u64,
    connect_errors: u64,
    connections: u64,
}

impl Tally {
    fn lost(&self) -> u64 {
        self.lost_after_fin + self.lost_in_flight
    }

    fn line(&self) -> String {
        format!(
            "sent {}, answered {}, lost {} ({} after the server's FIN, {} crossing it), \
             refused connects {}, reset in the backlog {}, timeouts {}, other connect errors {}, \
             connections {}",
            self.sent,
            self.answered,
            self.lost(),
            self.lost_after_fin,
            self.lost_in_flight,
            self.refused,
            self.reset_in_backlog,
            self.timeouts,
            self.connect_errors,
            self.connections,
        )
    }
}

impl AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.sent += o.sent;
        self.answered += o.answered;
        self.lost_after_fin += o.lost_after_fin;
        self.lost_in_flight += o.lost_in_flight;
        self.refused += o.refused;
        self.reset_in_backlog += o.reset_in_backlog;
        self.timeouts += o.timeouts;
        self.connect_errors += o.connect_errors;
        self.connections += o.connections;
    }
}

/// Whether the server's FIN (or a reset) is already waiting on `client`.
fn closed_by_server(client: &Client) -> bool {
    let stream = &client.stream;
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0; 1];
    let closed = match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

/// One keep-alive client: request, response, pause, until a connect is
/// refused (or `until`).
fn run_client(
    addr: SocketAddr,
    seed: u64,
    until: Instant,
    listener_closes: Arc<OnceLock<Instant>>,
) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let pause = |rng: &mut Rng| Duration::from_millis(rng.range(PAUSE_MS.0, PAUSE_MS.1));
    // Start at a random moment, so the clients' phases are spread.
    thread::sleep(Duration::from_millis(rng.below(PAUSE_MS.1)));
    // The connection, and whether it has carried a response yet.
    let mut conn: Option<(Client, bool)> = None;
    while Instant::now() < until {
        let (client, used) = match &mut conn {
            Some(c) => c,
            None => match Client::connect(addr, IO_TIMEOUT) {
                Ok(client) => {
                    tally.connections += 1;
                    conn.insert((client, false))
                }
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    tally.refused += 1;
                    break;
                }
                Err(e)
                    if listener_closes
                        .get()
                        .is_some_and(|&at| Instant::now() >= at) =>
                {
                    eprintln!("connect failed as the listener closed: {e}");
                    tally.reset_in_backlog += 1;
                    break;
                }
                Err(e) => {
                    eprintln!("connect failed before the listener could close: {e}");
                    tally.connect_errors += 1;
                    break;
                }
            },
        };
        let fin_already = *used && closed_by_server(client);
        tally.sent += 1;
        let outcome = client
            .stream
            .write_all(b"GET / HTTP/1.1\r\nHost: ebb\r\n\r\n")
            .and_then(|()| client.read_response());
        match outcome {
            Ok(response) => {
                assert_eq!(response.status, 200, "{response:?}");
                tally.answered += 1;
                *used = true;
                if response.close {
                    conn = None;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                tally.timeouts += 1;
                break;
            }
            Err(e) => {
                if !*used && e.kind() == ErrorKind::ConnectionReset {
                    tally.reset_in_backlog += 1;
                } else if fin_already {
                    tally.lost_after_fin += 1;
                } else {
                    tally.lost_in_flight += 1;
                }
                conn = None;
            }
        }
        thread::sleep(pause(&mut rng));
    }
    tally
}

/// The seed of every client's pauses: `CLOSE_RACE_SEED`, or the clock.
fn seed() -> u64 {
    std::env::var("CLOSE_RACE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// Runs `DRAINS` drains of a fresh server started with `args`, each under
/// `CLIENTS` clients; what they saw, summed. `pre_stop` is how long the
/// listener stays open after SIGTERM.
fn drains_under_load(name: &str, args: &[&str], pre_stop: Duration) -> Tally {
    let seed = seed();
    eprintln!("{name}: seed {seed} (CLOSE_RACE_SEED={seed} repeats the pauses)");
    let mut total = Tally::default();
    for drain in 0..DRAINS {
        let ebb = Ebb::start(args);
        let until = Instant::now() + Duration::from_secs(20);
        let listener_closes = Arc::new(OnceLock::new());
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let addr = ebb.addr;
                let seed = seed ^ ((drain * CLIENTS + i) as u64).wrapping_mul(0x9e37_79b9);
                let listener_closes = Arc::clone(&listener_closes);
                thread::spawn(move || run_client(addr, seed, until, listener_closes))
            })
            .collect();
        thread::sleep(RUN);
        // Set before the signal: the listener cannot close earlier.
        listener_closes
            .set(Instant::now() + pre_stop)
            .expect("a fresh cell each drain");
        ebb.signal(libc::SIGTERM);
        let terminated = Instant::now();
        let exited = ebb.expect_clean_exit(Duration::from_secs(10));
        let mut tally = Tally::default();
        for client in clients {
            tally += client.join().unwrap();
        }
        let log = ebb.log();
        let report = log
            .lines()
            .rev()
            .find(|l| l.contains("drain complete"))
            .unwrap_or("no drain report");
        eprintln!(
            "{name}: drain {}: exit {:.0} ms after SIGTERM; {}\n  {report}",
            drain + 1,
            (exited - terminated).as_secs_f64() * 1000.0,
            tally.line()
        );
        total += tally;
    }
    // The rate per request sent depends on how long the clients ran before
    // SIGTERM; the losses per drain do not.
    eprintln!(
        "{name}: over {DRAINS} drains of {CLIENTS} clients: {}; loss rate {} / {} = {:.3}% \
         of requests sent ({:.1} lost per drain of {CLIENTS} clients)",
        total.line(),
        total.lost(),
        total.sent,
        100.0 * total.lost() as f64 / total.sent.max(1) as f64,
        total.lost() as f64 / DRAINS as f64,
    );
    assert_eq!(total.timeouts, 0, "{}", total.line());
    assert_eq!(total.connect_errors, 0, "{}", total.line());
    total
}

#[test]
fn close_race_with_pre_stop_loses_no_request() {
    let _serial = serial();
    let total = drains_under_load(
        "with --pre-stop 0.6",
        &[
            "--workers",
            "2",
            "--drain-timeout",
            "5",
            "--pre-stop",
            PRE_STOP,
        ],
        Duration::from_secs_f64(PRE_STOP.parse().expect("seconds")),
    );
    assert!(total.answered > 0);
    assert_eq!(total.lost(), 0, "{}", total.line());
}

#[test]
fn close_race_without_pre_stop_prints_the_loss_rate() {
    let _serial = serial();
    let total = drains_under_load(
        "without pre-stop",
        &["--workers", "2", "--drain-timeout", "5"],
        Duration::ZERO,
    );
    assert!(total.answered > 0);
}

/// A request that reached the server's socket before the stop was sent
/// before it, so it is answered, even on a connection idle long enough for
/// the drain to close at once. ebb is frozen (SIGSTOP) while the request
/// arrives and the stop is sent, so both wait for it when it resumes: it
/// must read the request before applying the stop. Several rounds, as the
/// order in which its threads resume varies.
#[test]
fn a_request_already_in_the_socket_when_the_stop_comes_is_answered() {
    let _serial = serial();
    for round in 0..8 {
        let ebb = Ebb::start(&["--workers", "1", "--no-access-log"]);
        let mut client = Client::connect(ebb.addr, Duration::from_secs(10)).unwrap();
        assert_eq!(client.get("/").unwrap().status, 200);
        // Idle for longer than `idle_close_after` (250 ms).
        thread::sleep(Duration::from_millis(400));
        assert!(ebb_tests::kill(ebb.pid(), libc::SIGSTOP));
        client.send_get("/").unwrap();
        thread::sleep(Duration::from_millis(50));
        ebb.signal(libc::SIGTERM);
        thread::sleep(Duration::from_millis(50));
        assert!(ebb_tests::kill(ebb.pid(), libc::SIGCONT));
        let response = client.read_response();
        assert!(
            response.as_ref().is_ok_and(|r| r.status == 200),
            "round {round}: {response:?}\n{}",
            ebb.log()
        );
        drop(client);
        ebb.expect_clean_exit(Duration::from_secs(10));
    }
}
