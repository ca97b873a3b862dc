//! End-to-end: the `ebb` binary's command line, its demo routes' methods, and
//! the exit status that tells a complete drain from a forced one.

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use ebb_tests::{ebb_binary, serial, Client, Ebb};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// `ebb` run to completion with `args`: its status and stdout.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(ebb_binary()).args(args).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    (output.status.code(), stdout)
}

#[test]
fn version_prints_the_package_version_and_exits_0() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../driver-mio/Cargo.toml");
    let manifest = std::fs::read_to_string(manifest).unwrap();
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("version in driver-mio/Cargo.toml");
    assert_eq!(run(&["--version"]), (Some(0), format!("ebb {version}\n")));
    assert_eq!(run(&["-V"]), (Some(0), format!("ebb {version}\n")));
}

#[test]
fn help_lists_version_and_the_exit_statuses() {
    let (code, help) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(help.contains("--version"), "{help}");
    for status in ["  0  ", "  1  ", "  2  ", "  3  ", "  4  "] {
        assert!(help.contains(status), "exit status {status:?}:\n{help}");
    }
}

#[test]
fn help_into_a_closed_pipe_is_no_panic() {
    // A pipe whose reader is gone before ebb starts: its write fails with
    // EPIPE.
    let mut fds = [0; 2];
    // SAFETY: pipe fills `fds` with two new descriptors; the read end is
    // closed at once and the write end owned by `write_end` alone.
    let write_end = unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::close(fds[0]);
        std::os::fd::OwnedFd::from_raw_fd(fds[1])
    };
    let output = Command::new(ebb_binary())
        .arg("--help")
        .stdout(std::process::Stdio::from(write_end))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_pid_file_that_cannot_be_written_fails_the_start() {
    let missing = std::env::temp_dir()
        .join(format!("ebb-no-such-dir-{}", std::process::id()))
        .join("ebb.pid");
    // Launched, not run to its end: a server that serves without its pid
    // file would never exit on its own.
    let ebb = Ebb::launch(&["--pid-file", missing.to_str().unwrap()]);
    let exit = ebb.wait_exit(Duration::from_secs(10));
    let log = ebb.log();
    let (status, _) = exit.unwrap_or_else(|| panic!("still running:\n{log}"));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("cannot write the pid file"), "{log}");
    assert!(
        !log.contains("listening"),
        "it fails before it serves: {log}"
    );
}

#[test]
fn too_many_workers_for_the_descriptor_limit_is_named_at_start() {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(ebb_binary());
    command.args(["--bind", "127.0.0.1:0", "--workers", "100"]);
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("with 100 workers"), "{stderr}");
}

#[test]
fn an_upgrade_command_not_runnable_at_start_is_warned_of() {
    let _serial = serial();
    let ebb = Ebb::start(&["--upgrade-command", "/nonexistent/ebb"]);
    assert!(
        ebb.log()
            .contains("upgrade command /nonexistent/ebb: not an executable file now"),
        "{}",
        ebb.log()
    );
    ebb.signal(libc::SIGTERM);
    ebb.expect_exit_code(Duration::from_secs(10), 0);
}

#[test]
fn a_pid_file_of_another_running_server_is_warned_of_and_taken_over() {
    let _serial = serial();
    let dir = ebb_tests::TempDir::new("shared-pid");
    let pid_file = dir.join("ebb.pid");
    let path = pid_file.to_str().unwrap();
    let first = Ebb::start(&["--pid-file", path]);
    let first_pid = ebb_tests::wait_pid_file_change(&pid_file, None, IO_TIMEOUT);
    let second = Ebb::start(&["--pid-file", path]);
    let second_pid = ebb_tests::wait_pid_file_change(&pid_file, first_pid, IO_TIMEOUT);
    assert!(second_pid.is_some() && second_pid != first_pid);
    let warning = format!("names process {}, which is running", first_pid.unwrap());
    assert!(second.log().contains(&warning), "{}", second.log());
    assert!(!first.log().contains("which is running"), "{}", first.log());
    for ebb in [&first, &second] {
        ebb.signal(libc::SIGTERM);
        ebb.expect_exit_code(Duration::from_secs(10), 0);
    }
}

#[test]
fn known_path_with_another_method_is_405_with_allow() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    client
        .stream
        .write_all(b"POST / HTTP/1.1\r\nHost: ebb\r\nContent-Length: 2\r\n\r\nhi")
        .unwrap();
    let response = client.read_response().unwrap();
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD"));
    let response = client.get("/echo").unwrap();
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("POST"));
    assert_eq!(client.get("/nowhere").unwrap().status, 404);
    drop(client);
    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(10));
}

#[test]
fn a_refusal_for_a_client_waiting_for_100_continue_is_answered_at_once() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    client
        .stream
        .write_all(b"POST /nowhere HTTP/1.1\r\nHost: ebb\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .unwrap();
    // No 100 first, and no body asked for: the 404, then the close.
    let mut got = String::new();
    client.stream.read_to_string(&mut got).unwrap();
    assert!(got.starts_with("HTTP/1.1 404 Not Found\r\n"), "{got}");
    assert!(got.contains("Connection: close\r\n"), "{got}");
    // Nor for a body announced longer than /echo takes.
    let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    client
        .stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: ebb\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    client.stream.read_to_string(&mut got).unwrap();
    assert!(
        got.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
        "{got}"
    );
    ebb.signal(libc::SIGTERM);
    ebb.expect_clean_exit(Duration::from_secs(10));
}

#[test]
fn complete_drain_exits_0() {
    let _serial = serial();
    let ebb = Ebb::start(&[]);
    let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    client.send_get("/sleep?ms=300").unwrap();
    thread::sleep(Duration::from_millis(100));
    ebb.signal(libc::SIGTERM);
    assert_eq!(client.read_response().unwrap().status, 200);
    drop(client);
    ebb.expect_exit_code(Duration::from_secs(10), 0);
}

#[test]
fn drain_deadline_cutting_a_request_exits_3() {
    let _serial = serial();
    let ebb = Ebb::start(&["--drain-timeout", "1"]);
    // Sent before the signal: the request is cut however late it is read.
    let mut slow = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    slow.send_get("/sleep?ms=5000").unwrap();
    thread::sleep(Duration::from_millis(300));
    ebb.signal(libc::SIGTERM);
    ebb.expect_exit_code(Duration::from_secs(15), 3);
    assert!(ebb.log().contains("cut 1,"), "{}", ebb.log());
}

#[test]
fn second_signal_forcing_the_exit_exits_4() {
    let _serial = serial();
    let ebb = Ebb::start(&["--drain-timeout", "30"]);
    let mut slow = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    slow.send_get("/sleep?ms=60000").unwrap();
    thread::sleep(Duration::from_millis(300));
    ebb.signal(libc::SIGTERM);
    thread::sleep(Duration::from_millis(300));
    assert!(
        ebb.exit().is_none(),
        "the first SIGTERM waits for the request"
    );
    ebb.signal(libc::SIGTERM);
    ebb.expect_exit_code(Duration::from_secs(10), 4);
}
