//! An embedding program upgrades from code: `ShutdownHandle::upgrade()`
//! hands its listener to the successor named with `Builder::upgrade_command`
//! (here the `ebb` binary), and `serve` returns a report that says so.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ebb_mio::Response;

/// Kills the process named, unless it is this one, when dropped.
struct Reap(Option<String>);

impl Drop for Reap {
    fn drop(&mut self) {
        let pid = self.0.as_deref().and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|&p| p != std::process::id() as i32) {
            // SAFETY: kill and waitpid on this process's child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

fn get(addr: std::net::SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn upgrade_from_code_hands_the_listener_to_the_successor() {
    let dir = std::env::temp_dir().join(format!("ebb-embed-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("ebb.pid");
    let (builder, addr) = common::on_loopback(2);
    let builder = builder
        .pid_file(&pid_file)
        .upgrade_timeout(Duration::from_secs(20))
        // The successor takes the inherited socket (its --bind is unused)
        // and rewrites the pid file when it serves.
        .upgrade_command(
            env!("CARGO_BIN_EXE_ebb"),
            [
                "--bind".as_ref(),
                "127.0.0.1:9".as_ref(),
                "--pid-file".as_ref(),
                pid_file.as_os_str(),
            ],
        );
    let handle = builder.shutdown_handle();
    let server = std::thread::spawn(move || {
        builder.serve(|_req, res| res.respond(Response::text(200, "embedded")))
    });
    let until = Instant::now() + Duration::from_secs(20);
    let me = std::process::id().to_string();
    while std::fs::read_to_string(&pid_file).map_or(true, |p| p.trim() != me) {
        assert!(Instant::now() < until, "the pid file");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(get(addr).ends_with("embedded"));

    handle.upgrade();
    let report = server.join().unwrap();
    // Whatever happened, no successor outlives the test.
    let mut successor_guard = Reap(std::fs::read_to_string(&pid_file).ok());
    let report = report.unwrap();
    assert!(report.handed_off, "{report}");
    assert_eq!(report.forced, None, "{report}");
    let successor: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(successor.to_string(), me);
    assert!(get(addr).ends_with("Hello, World!"), "the successor serves");

    // SAFETY: kill and waitpid on the successor, this process's child.
    let status = unsafe {
        libc::kill(successor, libc::SIGTERM);
        let mut status = 0;
        libc::waitpid(successor, &mut status, 0);
        status
    };
    successor_guard.0 = None;
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A timeout too long for the clock (`Duration::MAX`, or a `--upgrade-timeout`
/// of 1e19 seconds) never runs out: the upgrade waits on its successor, here
/// one that exits at once, so the upgrade fails and the server keeps serving.
#[test]
fn an_upgrade_timeout_too_long_for_the_clock_never_runs_out() {
    let (builder, addr) = common::on_loopback(1);
    let builder = builder
        .upgrade_timeout(Duration::MAX)
        .upgrade_command("/bin/false", Vec::<std::ffi::OsString>::new());
    let handle = builder.shutdown_handle();
    let server = std::thread::spawn(move || {
        builder.serve(|_req, res| res.respond(Response::text(200, "embedded")))
    });
    assert!(get(addr).ends_with("embedded"));
    handle.upgrade();
    // The failed upgrade leaves the server serving; give it time to fail.
    std::thread::sleep(Duration::from_millis(200));
    assert!(get(addr).ends_with("embedded"));
    handle.shutdown();
    let report = server.join().expect("serve returns").unwrap();
    assert!(!report.handed_off, "{report}");
    assert_eq!(report.forced, None, "{report}");
}
