//! The observer and the access log of an embedded server: an observer counts
//! requests by outcome across a drain and agrees with the `DrainReport`; an
//! embedder's access log goes to its own logger on `ebb::access`; the error
//! lines of a failing handler name the client.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ebb_mio::{
    CloseReason, Config, Observation, Outcome, Phase, Request, Responder, Response,
    ACCESS_LOG_TARGET,
};
use log::{Level, Log, Metadata, Record};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A request's end as the test keeps it.
#[derive(Clone, Debug)]
struct Seen {
    worker: usize,
    peer: SocketAddr,
    method: Option<String>,
    target: Option<String>,
    status: Option<u16>,
    request_body_bytes: Option<u64>,
    response_body_bytes: u64,
    time_to_response: Option<Duration>,
    duration: Duration,
    outcome: Outcome,
    /// Whether its worker had left `Serving` when it ended.
    stopping: bool,
}

#[derive(Debug, Default)]
struct Heard {
    requests: Vec<Seen>,
    phases: Vec<(usize, Phase)>,
    stopping_workers: BTreeSet<usize>,
}

fn app(req: &Request<'_>, res: Responder) {
    match req.path() {
        "/" => res.respond(Response::text(200, "ok")),
        "/echo" => res.respond(Response::new(200).body(req.body().to_vec())),
        "/panic" => panic!("the handler panics"),
        "/drop" => drop(res),
        "/invalid" => res.respond(Response::new(99)),
        // Answered on the worker's thread, after a while.
        "/busy" => {
            std::thread::sleep(Duration::from_millis(200));
            res.respond(Response::text(200, "busy"));
        }
        "/slow" => {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                res.respond(Response::text(200, "slow"));
            });
        }
        // Answered long after the drain deadline: cut.
        "/never" => {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(3));
                drop(res);
            });
        }
        // Given up on by its thread only after core ended the request.
        "/late-drop" => {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(600));
                drop(res);
            });
        }
        _ => res.respond(Response::new(404)),
    }
}

/// Sends `request` on a new connection and reads until the server closes
/// it; the client's address and what it read.
fn exchange(addr: SocketAddr, request: &[u8]) -> (SocketAddr, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    (stream.local_addr().unwrap(), answer)
}

fn closing_get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes()
}

#[test]
fn observer_counts_by_outcome_agree_with_the_drain_report() {
    let (builder, addr) = common::on_loopback(2);
    let heard = Arc::new(Mutex::new(Heard::default()));
    let sink = heard.clone();
    let builder = builder
        .drain_timeout(Duration::from_secs(1))
        .observe(move |observation| {
            let mut heard = sink.lock().unwrap();
            match *observation {
                Observation::Request(end) => {
                    let stopping = heard.stopping_workers.contains(&end.worker);
                    heard.requests.push(Seen {
                        worker: end.worker,
                        peer: end.peer,
                        method: end.method.map(str::to_owned),
                        target: end.target.map(str::to_owned),
                        status: end.status,
                        request_body_bytes: end.request_body_bytes,
                        response_body_bytes: end.response_body_bytes,
                        time_to_response: end.time_to_response,
                        duration: end.duration,
                        outcome: end.outcome,
                        stopping,
                    });
                }
                Observation::Phase { worker, phase } => {
                    heard.stopping_workers.insert(worker);
                    heard.phases.push((worker, phase));
                }
                _ => {}
            }
        });
    let shutdown = builder.shutdown_handle();
    let server = std::thread::spawn(move || builder.serve(app));

    // While serving: none of these is in the drain report.
    let (_, answer) = exchange(addr, &closing_get("/"));
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let (echo_peer, answer) = exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert!(answer.ends_with("\r\n\r\nhello"), "{answer}");
    let (_, answer) = exchange(addr, &closing_get("/panic"));
    assert!(answer.starts_with("HTTP/1.1 500 "), "{answer}");
    let (_, answer) = exchange(addr, &closing_get("/busy"));
    assert!(answer.ends_with("busy"), "{answer}");

    // Begun before the stop: one answered during the drain, one cut at its
    // deadline, one refused once the rest of its head arrives.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    slow.write_all(&closing_get("/slow")).unwrap();
    let mut never = TcpStream::connect(addr).unwrap();
    never.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    never.write_all(&closing_get("/never")).unwrap();
    let mut refused = TcpStream::connect(addr).unwrap();
    refused.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    refused.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    shutdown.shutdown();
    // The rest of the bad head comes once both workers drain: a worker
    // reads what its sockets hold before it applies a stop.
    let since = Instant::now();
    while heard.lock().unwrap().stopping_workers.len() < 2 {
        assert!(since.elapsed() < IO_TIMEOUT, "the workers drain");
        std::thread::sleep(Duration::from_millis(5));
    }
    refused.write_all(b"no colon here\r\n\r\n").unwrap();

    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    answer.clear();
    refused.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let report = server.join().unwrap().unwrap();

    let heard = heard.lock().unwrap();
    let mut during_drain = BTreeMap::new();
    let mut while_serving = BTreeMap::new();
    for seen in &heard.requests {
        let counts = if seen.stopping {
            &mut during_drain
        } else {
            &mut while_serving
        };
        *counts.entry(seen.outcome.label()).or_insert(0u64) += 1;
    }
    let count = |counts: &BTreeMap<&str, u64>, label| counts.get(label).copied().unwrap_or(0);
    assert_eq!(
        count(&during_drain, "complete") + count(&during_drain, "app-fault"),
        report.requests_completed,
        "{report}\n{heard:#?}"
    );
    assert_eq!(
        count(&during_drain, "rejected"),
        report.requests_rejected,
        "{report}"
    );
    assert_eq!(count(&during_drain, "cut"), report.requests_cut, "{report}");
    // And what they were.
    assert_eq!(
        (
            report.requests_completed,
            report.requests_rejected,
            report.requests_cut
        ),
        (1, 1, 1),
        "{report}"
    );
    assert_eq!(
        while_serving,
        BTreeMap::from([("app-fault", 1), ("complete", 3)]),
        "{heard:#?}"
    );

    // Each worker heard Draining, then Exited (no pre-stop was set).
    for worker in 0..2 {
        let phases: Vec<_> = heard
            .phases
            .iter()
            .filter(|(w, _)| *w == worker)
            .map(|(_, phase)| std::mem::discriminant(phase))
            .collect();
        let draining = std::mem::discriminant(&Phase::Draining {
            deadline: ebb_mio::Time::ZERO,
        });
        assert_eq!(
            phases,
            [draining, std::mem::discriminant(&Phase::Exited)],
            "worker {worker}: {:?}",
            heard.phases
        );
    }

    let find = |target: &str| {
        heard
            .requests
            .iter()
            .find(|seen| seen.target.as_deref() == Some(target))
            .unwrap_or_else(|| panic!("{target} in {heard:#?}"))
    };
    let echo = find("/echo");
    assert_eq!(echo.peer, echo_peer);
    assert_eq!(echo.method.as_deref(), Some("POST"));
    assert_eq!(
        (echo.request_body_bytes, echo.response_body_bytes),
        (Some(5), 5)
    );
    // Timed after its handler returned, not from when the loop woke up.
    let busy = find("/busy");
    let to_response = busy.time_to_response.expect("answered");
    assert!(to_response >= Duration::from_millis(200), "{busy:?}");
    let slow = find("/slow");
    assert_eq!(slow.status, Some(200));
    let to_response = slow.time_to_response.expect("answered");
    assert!(to_response >= Duration::from_millis(300), "{slow:?}");
    assert!(slow.duration >= to_response, "{slow:?}");
    let never = find("/never");
    assert_eq!(never.status, None);
    assert_eq!(never.time_to_response, None);
    assert_eq!(never.outcome, Outcome::Unfinished(CloseReason::DeadlineCut));
    assert!(never.duration >= Duration::from_secs(1), "{never:?}");
    let refused = heard
        .requests
        .iter()
        .find(|seen| seen.status == Some(400))
        .expect("the refused request");
    assert_eq!(
        (refused.method.as_deref(), refused.request_body_bytes),
        (None, None)
    );
    assert!(matches!(refused.outcome, Outcome::Rejected(_)));
    assert!(heard.requests.iter().all(|seen| seen.worker < 2));
}

/// Captures the records of this test binary.
struct Capture(Mutex<Vec<(String, Level, String)>>);

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let line = (
            record.target().to_owned(),
            record.level(),
            record.args().to_string(),
        );
        self.0.lock().unwrap().push(line);
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

/// The records captured so far; installs the capture first.
fn captured() -> Vec<(String, Level, String)> {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&CAPTURE).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Debug);
    });
    CAPTURE.0.lock().unwrap().clone()
}

/// Serves `app` on one worker with the access log on or off, sends each
/// path on a connection of its own, and stops; the client address of each.
fn serve_paths(access_log: bool, paths: &[&str]) -> Vec<SocketAddr> {
    captured();
    let (builder, addr) = common::on_loopback(1);
    let builder = builder.access_log(access_log);
    let shutdown = builder.shutdown_handle();
    let server = std::thread::spawn(move || builder.serve(app));
    let peers = paths
        .iter()
        .map(|path| exchange(addr, &closing_get(path)).0)
        .collect();
    shutdown.shutdown();
    server.join().unwrap().unwrap();
    peers
}

const FAILING: [&str; 3] = ["/panic", "/drop", "/invalid"];

/// Checks that one error line, and only one, names `GET path from peer`
/// (a panic drops the responder too, and is still one failure).
fn error_line_names(records: &[(String, Level, String)], path: &str, peer: SocketAddr) {
    let named = format!("GET {path} from {peer}");
    let lines = records
        .iter()
        .filter(|(_, level, line)| *level == Level::Error && line.contains(&named))
        .count();
    assert_eq!(lines, 1, "one error line names {named}: {records:#?}");
}

#[test]
fn embedded_access_log_and_error_lines_name_the_client() {
    let peers = serve_paths(true, &["/", FAILING[0], FAILING[1], FAILING[2]]);
    let records = captured();
    let access = |peer: SocketAddr| {
        let peer = format!(" peer={peer} ");
        let lines: Vec<_> = records
            .iter()
            .filter(|(target, _, line)| target == ACCESS_LOG_TARGET && line.contains(&peer))
            .collect();
        assert_eq!(lines.len(), 1, "{peer}: {records:#?}");
        assert_eq!(lines[0].1, Level::Info);
        lines[0].2.clone()
    };
    let line = access(peers[0]);
    assert!(line.starts_with("ts="), "{line}");
    assert!(
        line.contains(" method=GET target=/ status=200 bytes=2 dur_ms="),
        "{line}"
    );
    assert!(
        line.ends_with(" keep_alive=false outcome=complete"),
        "{line}"
    );
    for (&peer, path) in peers[1..].iter().zip(FAILING) {
        let line = access(peer);
        assert!(
            line.contains(&format!(" target={path} status=500 ")),
            "{line}"
        );
        assert!(line.ends_with(" outcome=app-fault"), "{line}");
        error_line_names(&records, path, peer);
    }
}

#[test]
fn without_the_access_log_error_lines_still_name_the_client() {
    let peers = serve_paths(false, &FAILING);
    let records = captured();
    for (&peer, path) in peers.iter().zip(FAILING) {
        error_line_names(&records, path, peer);
        let peer = format!(" peer={peer} ");
        assert!(
            !records.iter().any(|(_, _, line)| line.contains(&peer)),
            "no access log: {records:#?}"
        );
    }
}

#[test]
fn a_responder_dropped_after_core_ended_its_request_is_no_error() {
    captured();
    let (builder, addr) = common::on_loopback(1);
    let builder = builder.config(Config {
        body_read_timeout: Duration::from_millis(200),
        stream_request_bodies: true,
        ..Config::default()
    });
    let shutdown = builder.shutdown_handle();
    let server = std::thread::spawn(move || builder.serve(app));
    // Its body never comes: core answers 408 in the application's place,
    // and the application's thread drops its responder later.
    let (_, answer) = exchange(
        addr,
        b"POST /late-drop HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab",
    );
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    std::thread::sleep(Duration::from_millis(800));
    shutdown.shutdown();
    server.join().unwrap().unwrap();
    let records = captured();
    // Its connection is gone by then: the lines name the request by id.
    let count = |level: Level, text: &str| {
        records
            .iter()
            .filter(|(_, l, line)| *l == level && line.contains(text))
            .count()
    };
    let by_id = records
        .iter()
        .filter(|(_, l, line)| {
            *l == Level::Error && line.contains("dropped its responder for RequestId")
        })
        .count();
    assert_eq!(by_id, 0, "{records:#?}");
    assert_eq!(
        count(Level::Debug, "dropped after its request ended"),
        1,
        "{records:#?}"
    );
}
